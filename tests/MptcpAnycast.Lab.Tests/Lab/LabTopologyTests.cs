using System.Diagnostics;
using MptcpAnycast.Cli.Lab;
using MptcpAnycast.Lab.Tests.Infrastructure;

namespace MptcpAnycast.Lab.Tests.Lab;

[Collection(AnycastLabCollection.Name)]
public sealed class LabTopologyTests
{
    [LabFact]
    public void Up_builds_client_router_and_two_pops_holding_the_anycast_address_routed_to_pop_a()
    {
        using TestLab lab = TestLab.Up(new LabOptions());
        LabTopology t = lab.Topology;

        Assert.Equal(t.Namespaces.Order(), LabTopology.ExistingNamespaces(t.Options.Prefix).Order());
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

        Assert.Contains($"{t.Plan.Anycast4} via {t.Pop(LabPopId.A).Address4}", Ip(t.RouterNamespace, "route"));
        Assert.Contains($"{t.Plan.Anycast6} via {t.Pop(LabPopId.A).Address6}", Ip(t.RouterNamespace, "-6", "route"));
        Assert.Contains("add_addr_accepted 1", Ip(t.ClientNamespace, "mptcp", "limits", "show"));
        Assert.True(File.Exists(LabState.PathFor(t.Options.Prefix)));
    }

    [LabFact]
    public void Flip_moves_both_anycast_routes_and_remembers_the_active_pop_for_a_later_invocation()
    {
        using TestLab lab = TestLab.Up(new LabOptions());
        LabTopology t = lab.Topology;

        Assert.Equal(LabPopId.B, t.Flip());
        Assert.Contains($"{t.Plan.Anycast4} via {t.Pop(LabPopId.B).Address4}", Ip(t.RouterNamespace, "route"));
        Assert.Contains($"{t.Plan.Anycast6} via {t.Pop(LabPopId.B).Address6}", Ip(t.RouterNamespace, "-6", "route"));
        Assert.Equal(LabPopId.B, LabTopology.Load(t.Options.Prefix)!.Active);

        LabTopology later = LabTopology.Load(t.Options.Prefix)!;
        Assert.Equal(LabPopId.A, later.Flip());
        Assert.Contains($"{t.Plan.Anycast4} via {t.Pop(LabPopId.A).Address4}", Ip(t.RouterNamespace, "route"));
    }

    [LabFact]
    public void Down_removes_namespaces_processes_and_state_and_is_safe_twice()
    {
        TestLab lab = TestLab.Up(new LabOptions());
        LabTopology t = lab.Topology;
        using Process sleeper = LabTopology.StartIn(t.Pop(LabPopId.A).Namespace, "sleep", ["60"]);
        var clock = Stopwatch.StartNew();
        while (!CommandRunner.Run("ip", ["netns", "pids", t.Pop(LabPopId.A).Namespace]).Split('\n', StringSplitOptions.TrimEntries).Contains(sleeper.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)))
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), "the process never entered the namespace");
            Thread.Sleep(10);
        }

        IReadOnlyList<string> removed = t.Down();

        Assert.Equal(4, removed.Count);
        Assert.Empty(LabTopology.ExistingNamespaces(t.Options.Prefix));
        Assert.False(File.Exists(LabState.PathFor(t.Options.Prefix)));
        Assert.True(sleeper.WaitForExit(5_000), "the process started in the lab survived lab down");
        Assert.Empty(t.Down());
        lab.Dispose();
    }

    [LabFact]
    public void Down_after_a_crash_finds_the_namespaces_by_prefix_without_a_state_file()
    {
        string prefix = TestLab.NewPrefix();
        CommandRunner.Run("ip", ["netns", "add", LabTopology.NamespaceName(prefix, "client")]);
        CommandRunner.Run("ip", ["netns", "add", LabTopology.NamespaceName(prefix, "popa")]);
        try
        {
            Assert.Equal(2, LabTopology.Down(prefix).Count);
            Assert.Empty(LabTopology.ExistingNamespaces(prefix));
        }
        finally
        {
            LabTopology.Down(prefix);
        }
    }

    [LabFact]
    public void Up_refuses_a_prefix_in_use_and_leaves_the_existing_lab_alone()
    {
        using TestLab lab = TestLab.Up(new LabOptions());

        var error = Assert.Throws<InvalidOperationException>(() => LabTopology.Up(lab.Topology.Options));
        Assert.Contains("exists", error.Message);
        Assert.Equal(4, LabTopology.ExistingNamespaces(lab.Topology.Options.Prefix).Count);
    }

    [LabFact]
    public void Up_that_fails_half_way_removes_what_it_made()
    {
        string prefix = TestLab.NewPrefix();
        var bad = new LabOptions { Prefix = prefix, Plan = LabAddressPlan.Default with { PopB4 = "203.0.113.999/24" } };

        Assert.Throws<InvalidOperationException>(() => LabTopology.Up(bad));
        Assert.Empty(LabTopology.ExistingNamespaces(prefix));
        Assert.False(File.Exists(LabState.PathFor(prefix)));
    }

    [LabFact]
    public void Userspace_path_manager_pops_announce_nothing_by_themselves()
    {
        using TestLab lab = TestLab.Up(new LabOptions { PathManager = LabPathManager.Userspace, Client = LabClientLimits.SubflowEndpoint });
        LabTopology t = lab.Topology;

        foreach (LabPop pop in t.Pops)
        {
            Assert.Equal("userspace", Sysctl(pop.Namespace, "net.mptcp.path_manager"));
            Assert.Equal("", Ip(pop.Namespace, "mptcp", "endpoint", "show").Trim());
        }

        string client = Ip(t.ClientNamespace, "mptcp", "endpoint", "show");
        Assert.Contains($"{LabAddressPlan.Host(t.Plan.ClientSecond4)} id 1 subflow", client);
        Assert.Contains("add_addr_accepted 0", Ip(t.ClientNamespace, "mptcp", "limits", "show"));
    }

    [LabFact]
    public void Shared_ipv4_puts_the_shared_address_on_each_pop_and_routes_each_port_to_its_pop()
    {
        using TestLab lab = TestLab.Up(new LabOptions { Unicast = LabUnicast.SharedIpv4, Nat = true, Firewall = true, StripMptcp = true });
        LabTopology t = lab.Topology;

        foreach (LabPop pop in t.Pops)
        {
            Assert.Contains($"{t.Plan.Shared4}/32", Ip(pop.Namespace, "addr", "show", "dev", "lo"));
            Assert.Contains($"{t.Plan.Shared4} port {pop.SharedPort}", Ip(pop.Namespace, "mptcp", "endpoint", "show"));
        }

        Assert.Contains("fwmark 0x1 lookup 101", Ip(t.RouterNamespace, "rule"));
        Assert.Contains($"{t.Plan.Shared4} via {t.Pop(LabPopId.B).Address4}", Ip(t.RouterNamespace, "route", "show", "table", "102"));
        string ruleset = LabTopology.Exec(t.RouterNamespace, "nft", "list", "ruleset");
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

    private static string Ip(string ns, params string[] arguments) => CommandRunner.Run("ip", ["-n", ns, .. arguments]);

    private static string Sysctl(string ns, string key) => LabTopology.Exec(ns, "sysctl", "-n", key).Trim();
}
