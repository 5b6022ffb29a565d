using System.Diagnostics;
using System.Text.Json;
using MptcpAnycast.Lab.Tests.Infrastructure;
using MptcpAnycast.Lab.Tests.Lab;
using Xunit.Abstractions;

namespace MptcpAnycast.Lab.Tests.EndToEnd;

/// <summary>
/// The twelve cases of the anycast lab, end to end: the POP server (<c>mptcp-anycast lab serve</c>) on the MptcpAnycast
/// transport in both POPs, a real client, the anycast route moved mid-stream. Each test builds its own lab and removes
/// it. This class owns the fallback matrix, each case asserted here only: a client that accepts ADD_ADDR (both modes,
/// every after-join policy), default limits with a subflow endpoint (the C flag), default limits with one address,
/// plain TCP, NAT, a firewall dropping joins, the MPTCP option stripped, IPv6, shared IPv4, IPv6 unicast for a
/// dual-stack and for an IPv4-only client socket; and 200 and 500 concurrent streams.
/// Elsewhere: the kernel's own flip mechanics and the backup-demotion stall in <c>Lab/AnycastFlipTests</c> (bare
/// sockets, kernel path manager); one server's start-up errors, endpoint lifecycle, on-demand and delayed
/// announcements, CAP_NET_ADMIN and churn in <c>Transport/TransportNamespaceTests</c>.
/// </summary>
[Collection(AnycastLabCollection.Name)]
public sealed class AnycastEndToEndTests(ITestOutputHelper output)
{
    private static readonly TimeSpan JoinWait = TimeSpan.FromSeconds(3);

    private static LabPathManager Pm(string name) => name == "kernel" ? LabPathManager.Kernel : LabPathManager.Userspace;

    private static LabOptions Options(LabClientLimits client = LabClientLimits.AcceptAddAddr, LabPathManager pm = LabPathManager.Userspace,
        LabUnicast unicast = LabUnicast.Own, bool nat = false, bool firewall = false, bool strip = false)
        => new() { Client = client, PathManager = pm, Unicast = unicast, Nat = nat, Firewall = firewall, StripMptcp = strip };

    private async Task<(StreamProbe Probe, JsonElement StateBeforeFlip)> JoinedAndSurvivesAsync(EndToEndRun run, bool ipv6 = false, bool dualStack = false)
    {
        StreamProbe probe = await run.ConnectAsync(ipv6: ipv6, dualStack: dualStack);
        Assert.True(await EndToEndRun.WaitForJoinAsync(probe, JoinWait), "the client did not join the unicast address");
        JsonElement state = await EndToEndRun.ServerStateAsync(probe);
        Assert.Equal("Joined", state.GetProperty("state").GetString());
        Assert.Equal("pop-a", state.GetProperty("pop").GetString());

        await run.StreamAcrossFlipAsync([probe]);

        output.WriteLine($"longest stall {probe.LongestGap.TotalMilliseconds:0} ms, subflows max {probe.MaxSubflows}");
        EndToEndRun.AssertSurvived(probe);
        return (probe, state);
    }

    // 1, 11: a client that accepts ADD_ADDR, both modes, every after-join policy.
    [LabTheory]
    [InlineData("userspace", "PreferUnicast")]
    [InlineData("userspace", "KeepBoth")]
    [InlineData("userspace", "MigrateToUnicast")]
    [InlineData("kernel", null)]
    public async Task Client_accepting_add_addr_survives_the_flip_with_every_byte_intact(string pathManager, string? afterJoin)
    {
        using EndToEndRun run = await EndToEndRun.StartAsync(Options(pm: Pm(pathManager)), afterJoin);
        (_, JsonElement state) = await JoinedAndSurvivesAsync(run);
        Assert.Equal(0, run.PopB.Count("announced")); // POP B never saw the connection

        // The join went to POP A's own unicast address, on the connection's port, and the anycast subflow was there too.
        string unicast = $"{run.Topology.Pop(LabPopId.A).Address4}:{PopServer.Port}";
        Assert.Contains(state.GetProperty("subflows").EnumerateArray(), s => s.GetProperty("local").GetString() == unicast);
        Assert.Contains(state.GetProperty("subflows").EnumerateArray(), s => s.GetProperty("local").GetString() == $"{run.Topology.Plan.Anycast4}:{PopServer.Port}");
        if (pathManager == "userspace")
        {
            Assert.Equal(unicast, state.GetProperty("announced").GetString());
            Assert.Contains($"joined {unicast}", run.PopA.Output);
        }
    }

    // 2, 11: default limits plus a subflow endpoint on a second address (the C-flag case), both modes.
    [LabTheory]
    [InlineData("userspace")]
    [InlineData("kernel")]
    public async Task Default_limits_client_with_a_subflow_endpoint_survives(string pathManager)
    {
        using EndToEndRun run = await EndToEndRun.StartAsync(Options(client: LabClientLimits.SubflowEndpoint, pm: Pm(pathManager)));
        await JoinedAndSurvivesAsync(run);
    }

    // 3
    [LabTheory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Default_limits_client_with_one_address_does_not_join_and_works_until_the_flip_or_is_rescued(bool rescue)
    {
        using EndToEndRun run = await EndToEndRun.StartAsync(Options(client: LabClientLimits.Defaults), rescue: rescue);
        StreamProbe probe = await run.ConnectAsync();
        Assert.False(await EndToEndRun.WaitForJoinAsync(probe, TimeSpan.FromSeconds(2.5)));
        JsonElement state = await EndToEndRun.ServerStateAsync(probe, "JoinTimedOut", TimeSpan.FromSeconds(5));

        Assert.Equal("JoinTimedOut", state.GetProperty("state").GetString());
        Assert.Contains("did not open a subflow", state.GetProperty("stateReason").GetString());
        Assert.Equal(1, state.GetProperty("addAddrSignal").GetInt32()); // announced, and ignored
        Assert.Equal(1, state.GetProperty("subflows").GetArrayLength());
        await run.StreamAcrossFlipAsync([probe]);
        run.AssertSingleSubflowOutcome(probe);
    }

    // 4
    [LabTheory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Plain_tcp_client_is_a_fallback_and_works_until_the_flip_or_is_rescued(bool rescue)
    {
        using EndToEndRun run = await EndToEndRun.StartAsync(Options(), rescue: rescue);
        StreamProbe probe = await run.ConnectAsync(mptcp: false);
        JsonElement state = await EndToEndRun.ServerStateAsync(probe);

        Assert.False(state.GetProperty("mptcp").GetBoolean());
        Assert.Equal("PlainTcpSocket", state.GetProperty("fallbackReason").GetString());
        Assert.Equal("NotAnnounced", state.GetProperty("state").GetString());
        await run.StreamAcrossFlipAsync([probe]);
        run.AssertSingleSubflowOutcome(probe);
    }

    // 5
    [LabFact]
    public async Task Client_behind_nat_joins_through_the_nat_and_survives()
    {
        using EndToEndRun run = await EndToEndRun.StartAsync(Options(nat: true));
        (_, JsonElement state) = await JoinedAndSurvivesAsync(run);

        // POP A saw both subflows coming from the NAT router's address, not the client's.
        string nat = LabAddressPlan.Host(run.Topology.Plan.RouterPopA4);
        Assert.All(state.GetProperty("subflows").EnumerateArray(), s => Assert.StartsWith($"{nat}:", s.GetProperty("remote").GetString()));
        Assert.Equal(2, state.GetProperty("subflows").GetArrayLength());
    }

    // 6
    [LabTheory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Dropped_subflows_to_the_unicast_address_time_out_and_the_connection_is_unharmed_before_the_flip_or_rescued(bool rescue)
    {
        using EndToEndRun run = await EndToEndRun.StartAsync(Options(firewall: true), rescue: rescue);
        StreamProbe probe = await run.ConnectAsync();
        Assert.False(await EndToEndRun.WaitForJoinAsync(probe, TimeSpan.FromSeconds(2.5)));
        JsonElement state = await EndToEndRun.ServerStateAsync(probe, "JoinTimedOut", TimeSpan.FromSeconds(5));

        Assert.Equal("JoinTimedOut", state.GetProperty("state").GetString());
        await run.StreamAcrossFlipAsync([probe]);
        run.AssertSingleSubflowOutcome(probe);
    }

    // 7
    [LabTheory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Mptcp_option_stripped_on_the_path_gives_plain_tcp_that_works_until_the_flip_or_is_rescued(bool rescue)
    {
        using EndToEndRun run = await EndToEndRun.StartAsync(Options(strip: true), rescue: rescue);
        StreamProbe probe = await run.ConnectAsync();
        JsonElement state = await EndToEndRun.ServerStateAsync(probe);

        Assert.False(state.GetProperty("mptcp").GetBoolean());
        Assert.Equal("PlainTcpSocket", state.GetProperty("fallbackReason").GetString());
        Assert.Equal(MptcpFallbackReason.FellBackToTcp, probe.Info().FallbackReason);
        await run.StreamAcrossFlipAsync([probe]);
        run.AssertSingleSubflowOutcome(probe);
    }

    // 8
    [LabFact]
    public async Task Ipv6_anycast_with_ipv6_unicast_survives()
    {
        using EndToEndRun run = await EndToEndRun.StartAsync(Options());
        (_, JsonElement state) = await JoinedAndSurvivesAsync(run, ipv6: true);
        Assert.Equal($"[{run.Topology.Pop(LabPopId.A).Address6}]:{PopServer.Port}", state.GetProperty("announced").GetString());
    }

    // 9
    [LabFact]
    public async Task Shared_ipv4_with_one_port_per_pop_survives()
    {
        using EndToEndRun run = await EndToEndRun.StartAsync(Options(unicast: LabUnicast.SharedIpv4));
        (_, JsonElement state) = await JoinedAndSurvivesAsync(run);
        Assert.Equal($"{run.Topology.Plan.Shared4}:{run.Topology.Plan.SharedPortA}", state.GetProperty("announced").GetString());
    }

    // 10
    [LabTheory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Ipv6_unicast_for_an_ipv4_connection_reaches_a_dual_stack_client_but_not_an_ipv4_socket_which_rescue_keeps(bool rescue)
    {
        using EndToEndRun run = await EndToEndRun.StartAsync(Options(unicast: LabUnicast.Ipv6Only), rescue: rescue);
        await JoinedAndSurvivesAsync(run, dualStack: true);

        // The kernel's limit: an AF_INET client socket receives the IPv6 ADD_ADDR and never joins.
        StreamProbe v4only = await run.ConnectAsync();
        Assert.False(await EndToEndRun.WaitForJoinAsync(v4only, TimeSpan.FromSeconds(2.5)));
        Assert.Equal("JoinTimedOut", (await EndToEndRun.ServerStateAsync(v4only, "JoinTimedOut", TimeSpan.FromSeconds(5))).GetProperty("state").GetString());
        if (rescue)
        {
            // The route has moved to B already (the dual-stack client's flip): flip back to A, then to B again.
            run.Topology.FlipTo(LabPopId.A);
            await run.StreamAcrossFlipAsync([v4only]);
            run.AssertSingleSubflowOutcome(v4only);
        }
    }

    // 12
    [LabFact]
    public async Task Two_hundred_concurrent_streams_survive_one_flip_without_losing_a_byte()
    {
        using EndToEndRun run = await EndToEndRun.StartAsync(Options());
        var probes = new List<StreamProbe>();
        for (int i = 0; i < 200; i++)
        {
            probes.Add(await run.ConnectAsync());
        }

        foreach (StreamProbe p in probes)
        {
            Assert.True(await EndToEndRun.WaitForJoinAsync(p, JoinWait), "a connection did not join");
        }

        await run.StreamAcrossFlipAsync(probes, seconds: 4, rate: 16 * 1024, flipAfter: 1.5, stallLimitSeconds: 6);

        // Accept-to-join, as the server logged it (announcement sent -> client subflow established), for the benchmarks README.
        List<double> joins = run.PopA.Output.Split('\n')
            .Select(l => System.Text.RegularExpressions.Regex.Match(l, @"joined .* after ([0-9.]+) ms"))
            .Where(m => m.Success)
            .Select(m => double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture))
            .Order()
            .ToList();
        Assert.Equal(200, joins.Count);
        output.WriteLine($"announcement to join: median {joins[joins.Count / 2]:0.00} ms, p99 {joins[(int)(joins.Count * 0.99)]:0.00} ms, max {joins[^1]:0.00} ms");

        int survived = probes.Count(p => p.Survived);
        output.WriteLine($"{survived}/200 survived; longest stall max {probes.Max(p => p.LongestGap.TotalMilliseconds):0} ms, median {probes.Select(p => p.LongestGap.TotalMilliseconds).Order().ElementAt(100):0} ms");
        Assert.All(probes, EndToEndRun.AssertSurvived);
    }

    // Issue 7: route changes under load.
    [LabFact]
    public async Task Five_hundred_paced_streams_survive_three_flips_back_and_forth_without_losing_or_reordering_a_byte()
    {
        using EndToEndRun run = await EndToEndRun.StartAsync(Options());
        var probes = new List<StreamProbe>();
        for (int i = 0; i < 500; i++)
        {
            probes.Add(await run.ConnectAsync());
        }

        foreach (StreamProbe p in probes)
        {
            Assert.True(await EndToEndRun.WaitForJoinAsync(p, JoinWait), "a connection did not join");
        }

        // A -> B -> A -> B while every stream runs.
        long started = Stopwatch.GetTimestamp();
        await run.StreamAcrossFlipsAsync(probes, seconds: 6, rate: 8 * 1024, flipsAt: [1.5, 3.0, 4.5]);

        List<double> endedAt = probes.Select(p => Stopwatch.GetElapsedTime(started, p.LongestGapEndedAt).TotalSeconds).Order().ToList();
        output.WriteLine($"{probes.Count(p => p.Survived)}/500 survived; longest stall max {probes.Max(p => p.LongestGap.TotalMilliseconds):0} ms, "
            + $"median {probes.Select(p => p.LongestGap.TotalMilliseconds).Order().ElementAt(250):0} ms; "
            + $"it ended {endedAt[0]:0.00}-{endedAt[^1]:0.00} s (median {endedAt[250]:0.00} s) after the start, the flips were at 1.5, 3.0, 4.5 s");
        Assert.All(probes, EndToEndRun.AssertSurvived); // per-byte pattern (order) and SHA-256 (content)
    }
}
