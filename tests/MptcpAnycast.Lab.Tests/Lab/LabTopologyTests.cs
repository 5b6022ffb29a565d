using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using MptcpAnycast.Lab.Tests.Infrastructure;

namespace MptcpAnycast.Lab.Tests.Lab;

[Collection(AnycastLabCollection.Name)]
public sealed class LabTopologyTests
{
    [LabFact]
    public void Up_builds_client_router_and_two_pops_holding_the_anycast_address_routed_to_pop_a()
    {
        using LabTopology t = LabTool.Up(new LabOptions());

        Assert.Equal(t.Namespaces.Select(ns => ns.Name).Order(), Topology.Existing(t.Options.Prefix).Order());
        foreach (LabPop pop in t.Pops)
        {
            string lo = Ip(pop.Namespace, "addr", "show", "dev", "lo");
            Assert.Contains($"{t.Plan.Anycast4}/32", lo);
            Assert.Contains($"{t.Plan.Anycast6}/128", lo);
            Assert.Equal("0", Sysctl(pop.Namespace, "net.mptcp.allow_join_initial_addr_port"));
            Assert.Equal("kernel", Sysctl(pop.Namespace, "net.mptcp.path_manager"));
            string endpoints = Ip(pop.Namespace, "mptcp", "endpoint", "show");
            Assert.Contains($"{pop.Address4} id 1 signal", endpoints);
            Assert.Contains($"{pop.Address6} id 2 signal", endpoints);
        }

        Assert.Contains($"{t.Plan.Anycast4} via {t.Pop(LabPopId.A).Address4}", t.Router.Ip("route"));
        Assert.Contains($"{t.Plan.Anycast6} via {t.Pop(LabPopId.A).Address6}", t.Router.Ip("-6", "route"));
        Assert.Contains("add_addr_accepted 1", t.Client.Ip("mptcp", "limits", "show"));
        Assert.True(File.Exists(LabState.PathFor(t.Options.Prefix)));
    }

    [LabFact]
    public void Flip_moves_both_anycast_routes_and_remembers_the_active_pop_for_a_later_invocation()
    {
        using LabTopology t = LabTool.Up(new LabOptions());

        Assert.Equal(LabPopId.B, t.Flip());
        Assert.Contains($"{t.Plan.Anycast4} via {t.Pop(LabPopId.B).Address4}", t.Router.Ip("route"));
        Assert.Contains($"{t.Plan.Anycast6} via {t.Pop(LabPopId.B).Address6}", t.Router.Ip("-6", "route"));
        Assert.Equal(LabPopId.B, LabTopology.Load(t.Options.Prefix)!.Active);

        LabTopology later = LabTopology.Load(t.Options.Prefix)!;
        Assert.Equal(LabPopId.A, later.Flip());
        Assert.Contains($"{t.Plan.Anycast4} via {t.Pop(LabPopId.A).Address4}", t.Router.Ip("route"));
    }

    [LabFact]
    public async Task Down_removes_namespaces_processes_and_state_and_is_safe_twice()
    {
        using LabTopology t = LabTool.Up(new LabOptions());
        using ChildProcess sleeper = t.Pop(LabPopId.A).Namespace.Start(["sleep", "60"]);
        var clock = Stopwatch.StartNew();
        while (!t.Pop(LabPopId.A).Namespace.Pids().Contains(sleeper.Pid))
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), "the process never entered the namespace");
            Thread.Sleep(10);
        }

        IReadOnlyList<string> removed = t.Down();

        Assert.Equal(4, removed.Count);
        Assert.Empty(Topology.Existing(t.Options.Prefix));
        Assert.False(File.Exists(LabState.PathFor(t.Options.Prefix)));
        Assert.True(await sleeper.WaitForExitAsync(TimeSpan.FromSeconds(5)), "the process started in the lab survived lab down");
        Assert.Empty(t.Down());
    }

    [LabFact]
    public void Down_after_a_crash_finds_the_namespaces_by_prefix_without_a_state_file()
    {
        string prefix = LabPrefix.New();
        LabNamespace.Create(Topology.NamespaceName(prefix, "client"));
        LabNamespace.Create(Topology.NamespaceName(prefix, "popa"));
        try
        {
            Assert.Equal(2, LabTopology.Down(prefix).Count);
            Assert.Empty(Topology.Existing(prefix));
        }
        finally
        {
            LabTopology.Down(prefix);
        }
    }

    [LabFact]
    public void Up_refuses_a_prefix_in_use_and_leaves_the_existing_lab_alone()
    {
        using LabTopology lab = LabTool.Up(new LabOptions());

        var error = Assert.Throws<InvalidOperationException>(() => LabTopology.Up(lab.Options));
        Assert.Contains("exists", error.Message);
        Assert.Equal(4, Topology.Existing(lab.Options.Prefix).Count);
    }

    [LabFact]
    public void Up_that_fails_half_way_removes_what_it_made()
    {
        string prefix = LabPrefix.New();
        var bad = new LabOptions { Prefix = prefix, Plan = LabAddressPlan.Default with { PopB4 = "203.0.113.999/24" } };

        Assert.Throws<InvalidOperationException>(() => LabTopology.Up(bad));
        Assert.Empty(Topology.Existing(prefix));
        Assert.False(File.Exists(LabState.PathFor(prefix)));
    }

    [LabFact]
    public void Userspace_path_manager_pops_announce_nothing_by_themselves()
    {
        using LabTopology t = LabTool.Up(new LabOptions { PathManager = LabPathManager.Userspace, Client = LabClientLimits.SubflowEndpoint });

        foreach (LabPop pop in t.Pops)
        {
            Assert.Equal("userspace", Sysctl(pop.Namespace, "net.mptcp.path_manager"));
            Assert.Equal("", Ip(pop.Namespace, "mptcp", "endpoint", "show").Trim());
        }

        string client = t.Client.Ip("mptcp", "endpoint", "show");
        Assert.Contains($"{LabAddressPlan.Host(t.Plan.ClientSecond4)} id 1 subflow", client);
        Assert.Contains("add_addr_accepted 0", t.Client.Ip("mptcp", "limits", "show"));
    }

    [LabFact]
    public void Shared_ipv4_puts_the_shared_address_on_each_pop_and_routes_each_port_to_its_pop()
    {
        using LabTopology t = LabTool.Up(new LabOptions { Unicast = LabUnicast.SharedIpv4, Nat = true, Firewall = true, StripMptcp = true });

        foreach (LabPop pop in t.Pops)
        {
            Assert.Contains($"{t.Plan.Shared4}/32", Ip(pop.Namespace, "addr", "show", "dev", "lo"));
            Assert.Contains($"{t.Plan.Shared4} port {pop.SharedPort}", Ip(pop.Namespace, "mptcp", "endpoint", "show"));
        }

        Assert.Contains("fwmark 0x1 lookup 101", t.Router.Ip("rule"));
        Assert.Contains($"{t.Plan.Shared4} via {t.Pop(LabPopId.B).Address4}", t.Router.Ip("route", "show", "table", "102"));
        string ruleset = t.Router.Exec("nft", "list", "ruleset");
        Assert.Contains("masquerade", ruleset);
        Assert.Contains($"tcp dport {t.Plan.SharedPortA} meta mark set 0x00000001", ruleset);
        Assert.Contains("drop", ruleset);
        Assert.Equal("nft reset tcp option mptcp", t.StripMechanism);
        Assert.Contains("reset tcp option mptcp", ruleset);

        string status = t.Status();
        Assert.Contains("-> POP A", status);
        Assert.Contains("policy rules", status);
        Assert.Contains("MPTCP sockets (ss -Mtni)", status);
        Assert.DoesNotContain("MISSING", status);
    }

    [LabFact]
    public void Three_pops_come_up_flip_to_moves_the_route_a_to_c_to_b_to_a_across_reloads_and_down_removes_five_namespaces()
    {
        using LabTopology t = LabTool.Up(new LabOptions { Pops = 3 });

        Assert.Equal([LabPopId.A, LabPopId.B, LabPopId.C], t.Pops.Select(p => p.Id));
        Assert.Equal(5, Topology.Existing(t.Options.Prefix).Count);
        LabPop c = t.Pop(LabPopId.C);
        Assert.Equal(Topology.NamespaceName(t.Options.Prefix, "popc"), c.Namespace.Name);
        Assert.Equal(("192.0.2.130/26", "2001:db8:cc::2/64"), (c.Link4, c.Link6));
        string router = Ip(t.Router, "-br", "addr", "show", "dev", "to-popc");
        Assert.Contains("192.0.2.129/26", router);
        Assert.Contains("2001:db8:cc::1/64", router);
        string lo = Ip(c.Namespace, "addr", "show", "dev", "lo");
        Assert.Contains($"{t.Plan.Anycast4}/32", lo);
        Assert.Contains($"{t.Plan.Anycast6}/128", lo);
        Assert.Equal("0", Sysctl(c.Namespace, "net.mptcp.allow_join_initial_addr_port"));
        string endpoints = Ip(c.Namespace, "mptcp", "endpoint", "show");
        Assert.Contains($"{c.Address4} id 1 signal", endpoints);
        Assert.Contains($"{c.Address6} id 2 signal", endpoints);
        AssertAnycastRoutedTo(t, LabPopId.A);

        Assert.True(t.FlipTo(LabPopId.C));
        AssertAnycastRoutedTo(t, LabPopId.C);

        LabTopology later = LabTopology.Load(t.Options.Prefix)!;
        Assert.Equal((3, 3, LabPopId.C), (later.Options.Pops, later.Pops.Count, later.Active));
        Assert.True(later.FlipTo(LabPopId.B));
        AssertAnycastRoutedTo(t, LabPopId.B);

        LabTopology last = LabTopology.Load(t.Options.Prefix)!;
        Assert.Equal(LabPopId.B, last.Active);
        Assert.True(last.FlipTo(LabPopId.A));
        AssertAnycastRoutedTo(t, LabPopId.A);
        Assert.False(last.FlipTo(LabPopId.A)); // already there: nothing to do
        AssertAnycastRoutedTo(t, LabPopId.A);
        Assert.Equal(LabPopId.A, LabTopology.Load(t.Options.Prefix)!.Active);

        string status = last.Status();
        Assert.Contains("pops 3", status);
        Assert.Contains($"POP C ({c.Namespace.Name}): link {c.Link4}, {c.Link6}", status);
        Assert.Contains($"== {c.Namespace.Name}", status);
        Assert.DoesNotContain("MISSING", status);

        IReadOnlyList<string> removed = t.Down();
        Assert.Equal(t.Namespaces.Select(ns => ns.Name).Order(), removed.Order());
        Assert.Equal(5, removed.Count);
        Assert.Empty(Topology.Existing(t.Options.Prefix));
    }

    [LabFact]
    public void Flip_goes_round_the_pops_in_order_and_returns_to_a()
    {
        using LabTopology t = LabTool.Up(new LabOptions { Pops = 3 });

        Assert.Equal(LabPopId.B, t.Flip());
        AssertAnycastRoutedTo(t, LabPopId.B);
        Assert.Equal(LabPopId.C, t.Flip());
        AssertAnycastRoutedTo(t, LabPopId.C);
        Assert.Equal(LabPopId.A, LabTopology.Load(t.Options.Prefix)!.Flip());
        AssertAnycastRoutedTo(t, LabPopId.A);
    }

    [LabFact]
    public async Task A_tcp_connection_from_the_client_reaches_whichever_of_three_pops_is_active()
    {
        using LabTopology t = LabTool.Up(new LabOptions { Pops = 3 });
        var servers = t.Pops.Select(pop => NameServer.Start(pop.Namespace, $"pop-{LabNames.Of(pop.Id)}")).ToList();
        try
        {
            foreach (LabPopId to in (LabPopId[])[LabPopId.A, LabPopId.C, LabPopId.B, LabPopId.A])
            {
                t.FlipTo(to);
                string expected = $"pop-{LabNames.Of(to)}";
                Assert.Equal(expected, await NameServer.AskAsync(t.Client, IPAddress.Parse(t.Plan.Anycast4)));
                Assert.Equal(expected, await NameServer.AskAsync(t.Client, IPAddress.Parse(t.Plan.Anycast6)));
            }
        }
        finally
        {
            servers.ForEach(s => s.Dispose());
        }
    }

    [LabFact]
    public void Shared_ipv4_nat_and_firewall_cover_the_third_pop()
    {
        using LabTopology t = LabTool.Up(new LabOptions { Pops = 3, Unicast = LabUnicast.SharedIpv4, Nat = true, Firewall = true });
        LabPop c = t.Pop(LabPopId.C);

        Assert.Contains($"{t.Plan.Shared4}/32", Ip(c.Namespace, "addr", "show", "dev", "lo"));
        Assert.Contains($"{t.Plan.Shared4} port {t.Plan.SharedPortC} id 1 signal", Ip(c.Namespace, "mptcp", "endpoint", "show"));
        Assert.Contains("fwmark 0x3 lookup 103", t.Router.Ip("rule"));
        Assert.Contains($"{t.Plan.Shared4} via {c.Address4}", t.Router.Ip("route", "show", "table", "103"));
        string ruleset = t.Router.Exec("nft", "list", "ruleset");
        Assert.Contains($"tcp dport {t.Plan.SharedPortC} meta mark set 0x00000003", ruleset);
        Assert.Contains("oifname { \"to-popa\", \"to-popb\", \"to-popc\" } masquerade", ruleset);
        Assert.Matches($@"ip daddr \{{[^}}]*\b{Regex.Escape(c.Address4)}\b[^}}]*\}} meta l4proto tcp drop", ruleset);
        Assert.Matches($@"ip6 daddr \{{[^}}]*{Regex.Escape(c.Address6)}\b[^}}]*\}} meta l4proto tcp drop", ruleset);
    }

    [LabFact]
    public void A_two_pop_lab_has_no_pop_c_and_flip_to_it_changes_nothing()
    {
        using LabTopology t = LabTool.Up(new LabOptions());

        Assert.False(t.HasPop(LabPopId.C));
        Assert.DoesNotContain(Topology.NamespaceName(t.Options.Prefix, "popc"), Topology.Existing(t.Options.Prefix));
        Assert.Throws<ArgumentOutOfRangeException>(() => t.Pop(LabPopId.C));
        Assert.Throws<ArgumentOutOfRangeException>(() => t.FlipTo(LabPopId.C));
        AssertAnycastRoutedTo(t, LabPopId.A);
        Assert.Equal(LabPopId.A, LabTopology.Load(t.Options.Prefix)!.Active);
        Assert.Throws<ArgumentException>(() => LabTopology.Up(new LabOptions { Prefix = LabPrefix.New(), Pops = 4 }));
    }

    [LabFact]
    public void A_state_file_without_a_pop_count_loads_as_a_two_pop_lab()
    {
        string prefix = LabPrefix.New();
        // The state file of a lab made before labs could have three POPs, flipped to B once.
        string old = $$"""
            {
              "Options": {
                "Prefix": "{{prefix}}",
                "Plan": {
                  "Anycast4": "192.0.2.100", "Anycast6": "2001:db8:ac::1", "Shared4": "192.0.2.200", "SharedPortA": 8001, "SharedPortB": 8002,
                  "RouterClient4": "192.0.2.1/26", "Client4": "192.0.2.2/26", "ClientSecond4": "192.0.2.3/26",
                  "RouterClient6": "2001:db8:c::1/64", "Client6": "2001:db8:c::2/64", "ClientSecond6": "2001:db8:c::3/64",
                  "RouterPopA4": "198.51.100.1/24", "PopA4": "198.51.100.2/24", "RouterPopA6": "2001:db8:a::1/64", "PopA6": "2001:db8:a::2/64",
                  "RouterPopB4": "203.0.113.1/24", "PopB4": "203.0.113.2/24", "RouterPopB6": "2001:db8:b::1/64", "PopB6": "2001:db8:b::2/64"
                },
                "Nat": false, "Firewall": false, "StripMptcp": false, "Unicast": "Own", "Client": "AcceptAddAddr", "PathManager": "Kernel"
              },
              "Active": "B",
              "StripMechanism": null
            }
            """;
        Directory.CreateDirectory(LabState.Directory);
        File.WriteAllText(LabState.PathFor(prefix), old);
        try
        {
            LabTopology lab = LabTopology.Load(prefix)!;

            Assert.Equal(2, lab.Options.Pops);
            Assert.Equal([LabPopId.A, LabPopId.B], lab.Pops.Select(p => p.Id));
            Assert.Equal(LabPopId.B, lab.Active);
            Assert.Equal(4, lab.Namespaces.Count);
        }
        finally
        {
            LabState.Delete(prefix);
        }
    }

    /// <summary>The router's anycast routes, IPv4 and IPv6, go via <paramref name="pop"/>'s link address and out of its interface.</summary>
    private static void AssertAnycastRoutedTo(LabTopology t, LabPopId pop)
    {
        LabPop expected = t.Pop(pop);
        Assert.Equal($"{t.Plan.Anycast4} via {expected.Address4} dev {expected.RouterInterface}",
            Collapse(t.Router.Ip("route", "show", t.Plan.Anycast4 + "/32")));
        Assert.StartsWith($"{t.Plan.Anycast6} via {expected.Address6} dev {expected.RouterInterface} ",
            Collapse(t.Router.Ip("-6", "route", "show", t.Plan.Anycast6 + "/128")) + " ");
    }

    private static string Collapse(string text) => string.Join(' ', text.Split((char[])[' ', '\n'], StringSplitOptions.RemoveEmptyEntries));

    private static string Ip(LabNamespace ns, params string[] arguments) => ns.Ip(arguments);

    private static string Sysctl(LabNamespace ns, string key) => ns.ReadSysctl(key);
}

/// <summary>
/// A TCP server in a namespace (its dual-stack listener made on a thread that entered it) that writes its name to every
/// connection and closes it: which POP a client reached.
/// </summary>
internal sealed class NameServer : IDisposable
{
    public const int Port = 9090;

    private readonly Socket _listener;
    private readonly Task _loop;

    private NameServer(Socket listener, string name)
    {
        _listener = listener;
        _loop = ServeAsync(name);
    }

    public static NameServer Start(LabNamespace ns, string name) => new(ns.Run(() =>
    {
        var listener = new Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp) { DualMode = true };
        listener.Bind(new IPEndPoint(IPAddress.IPv6Any, Port));
        listener.Listen();
        return listener;
    }), name);

    /// <summary>Connects from <paramref name="client"/> to <paramref name="address"/> and returns the name it reads.</summary>
    public static async Task<string> AskAsync(LabNamespace client, IPAddress address)
    {
        using Socket socket = client.Run(() => new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await socket.ConnectAsync(new IPEndPoint(address, Port), timeout.Token);
        var text = new StringBuilder();
        byte[] buffer = new byte[64];
        int read;
        while ((read = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token)) > 0)
        {
            text.Append(Encoding.ASCII.GetString(buffer, 0, read));
        }

        return text.ToString();
    }

    public void Dispose()
    {
        _listener.Dispose();
        _loop.Wait(TimeSpan.FromSeconds(5));
    }

    private async Task ServeAsync(string name)
    {
        byte[] reply = Encoding.ASCII.GetBytes(name);
        try
        {
            while (true)
            {
                using Socket accepted = await _listener.AcceptAsync();
                await accepted.SendAsync(reply, SocketFlags.None);
                accepted.Shutdown(SocketShutdown.Both);
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // The listener was closed: the test is over.
        }
    }
}
