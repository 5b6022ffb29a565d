using System.Diagnostics;
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

    private static string Ip(LabNamespace ns, params string[] arguments) => ns.Ip(arguments);

    private static string Sysctl(LabNamespace ns, string key) => ns.ReadSysctl(key);
}
