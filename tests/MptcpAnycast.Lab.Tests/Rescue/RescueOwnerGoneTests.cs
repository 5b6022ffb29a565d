using System.Diagnostics;
using System.Globalization;
using System.Net;
using MptcpAnycast.Lab.Tests.Infrastructure;
using MptcpAnycast.Lab.Tests.Lab;
using Xunit.Abstractions;

namespace MptcpAnycast.Lab.Tests.Rescue;

/// <summary>
/// Rescue when the owner is gone or out of reach, and when the agent of the POP that tunnels dies: a stall is worse
/// than a reset, so a plain TCP client must learn within a second that its connection is lost, and an agent that
/// crashes must not take the flows it was rescuing with it. The client uploads 1 KiB every 50 ms (TCP_NODELAY), so its
/// segments keep reaching the POP the route points at, and it reads at the same time, so a RST shows at once.
/// </summary>
[Collection(AnycastLabCollection.Name)]
public sealed class RescueOwnerGoneTests(ITestOutputHelper output)
{
    private const int Port = 8080;
    private const int Rate = 20 * 1024;
    private const long Endless = 1L << 40;
    private const string RstTable = "rescue_test_rst";
    private const string CutTable = "rescue_test_cut";
    private const int SlowPinMilliseconds = 300;
    private static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(50);

    /// <summary>What "within a second of the client's next segment" allows, measured from the event: 1 s and one tick.</summary>
    private static readonly double ResetBoundSeconds = 1.0 + Tick.TotalSeconds;

    [LabTheory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task When_the_owner_closes_the_connection_abruptly_after_the_flip_the_client_is_reset_within_a_second(bool ownersRstLost)
    {
        using LabTopology lab = LabTool.Up(new LabOptions());
        using LabRescue rescue = await LabRescue.StartAsync(lab, LabTool.Command);
        IPAddress anycast = IPAddress.Parse(lab.Plan.Anycast4);
        await using SinkServer a = SinkServer.Start(lab.Pop(LabPopId.A).Namespace, new IPEndPoint(IPAddress.Any, Port));
        await using SinkServer b = SinkServer.Start(lab.Pop(LabPopId.B).Namespace, new IPEndPoint(IPAddress.Any, Port));
        using PacedUpload client = await PacedUpload.StartAsync(lab.Client, new IPEndPoint(anycast, Port), Endless, Rate, Tick);
        SinkConnection owner = await a.WaitForConnectionAsync(1, TimeSpan.FromSeconds(5));
        await Eventually.TrueAsync(() => owner.Received >= 8 * 1024, "the upload reaches POP A");

        lab.FlipTo(LabPopId.B);
        long atFlip = owner.Received;
        if (!await Eventually.WaitAsync(() => rescue.Counters(LabPopId.B).GetValueOrDefault("lookups.found") >= 1 && owner.Received >= atFlip + 8 * 1024,
                TimeSpan.FromSeconds(15)))
        {
            Assert.Fail($"POP B did not find within 15 s that A owns the flow, or the upload did not go on through the tunnel " +
                $"(A received {owner.Received - atFlip} bytes after the flip; client error {client.Error ?? "none"}): {RescueLab.DescribeCounters(lab, rescue.Counters)}");
        }

        Assert.Null(client.Error);

        long reference;
        long rstsDropped = 0;
        if (ownersRstLost)
        {
            // A's own RST at the close is lost on the way: the client learns only from the RST that A's kernel sends for
            // its next segment, which B tunnels to A, and A decapsulates and finds no socket for.
            RescueLab.AddRouterRules(lab, RstTable, "forward", 0, $"ip saddr {anycast} tcp flags & rst != 0 counter drop");
            owner.Abort();
            await Task.Delay(300);
            rstsDropped = RescueLab.RouterRuleHits(lab, RstTable);
            Assert.True(client.Error is null, $"the client learned of the close although A's RSTs were dropped: {client.Error}");
            Assert.True(rstsDropped >= 1, "the router dropped no RST from the anycast address: A's close sent none");
            RescueLab.RemoveRouterRules(lab, RstTable);
            reference = Stopwatch.GetTimestamp();
        }
        else
        {
            reference = Stopwatch.GetTimestamp();
            owner.Abort();
        }

        bool failed = await Eventually.WaitAsync(() => client.Error is not null, TimeSpan.FromSeconds(5));
        double seconds = client.ErrorSecondsAfter(reference);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"A aborted the connection{(ownersRstLost ? $" ({rstsDropped} RSTs dropped on the router for 300 ms)" : "")}: client error {client.Error ?? "none"}" +
            $"{(failed ? $" {seconds * 1000:0} ms after {(ownersRstLost ? "the RSTs were let through again" : "the abort")}" : " within 5 s")}"));
        await Task.Delay(1100); // the agents' status is written every second
        output.WriteLine(RescueLab.DescribeCounters(lab, rescue.Counters));

        Assert.True(failed, "the client saw no error within 5 s of the owner's close: it hangs");
        Assert.Equal("ConnectionReset", client.Error);
        Assert.True(seconds <= ResetBoundSeconds, $"the reset came {seconds:0.000} s after the close, more than {ResetBoundSeconds} s");
        Assert.True(rescue.Counters(LabPopId.A).GetValueOrDefault("program.decapsulated") > 0, "POP A decapsulated nothing");
        Assert.Equal(0, rescue.Counters(LabPopId.B).GetValueOrDefault("lookups.resets"));
        Assert.Empty(b.Connections);
    }

    [LabTheory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task When_the_owner_is_unreachable_from_the_new_POP_its_lookup_times_out_and_the_client_is_reset_within_a_second(bool ipv6)
    {
        using LabTopology lab = LabTool.Up(new LabOptions());
        using LabRescue rescue = await LabRescue.StartAsync(lab, LabTool.Command);
        IPAddress anycast = IPAddress.Parse(ipv6 ? lab.Plan.Anycast6 : lab.Plan.Anycast4);
        IPAddress any = ipv6 ? IPAddress.IPv6Any : IPAddress.Any;
        await using SinkServer a = SinkServer.Start(lab.Pop(LabPopId.A).Namespace, new IPEndPoint(any, Port));
        await using SinkServer b = SinkServer.Start(lab.Pop(LabPopId.B).Namespace, new IPEndPoint(any, Port));
        using PacedUpload client = await PacedUpload.StartAsync(lab.Client, new IPEndPoint(anycast, Port), Endless, Rate, Tick);
        SinkConnection owner = await a.WaitForConnectionAsync(1, TimeSpan.FromSeconds(5));
        await Eventually.TrueAsync(() => owner.Received >= 8 * 1024, "the upload reaches POP A");

        // B never saw the flow, so it has not learned its owner; and now it cannot reach A at all.
        LabPop popA = lab.Pop(LabPopId.A), popB = lab.Pop(LabPopId.B);
        RescueLab.AddRouterRules(lab, CutTable, "forward", 0,
            $"ip saddr {popB.Address4} ip daddr {popA.Address4} counter drop",
            $"ip saddr {popA.Address4} ip daddr {popB.Address4} counter drop",
            $"ip6 saddr {popB.Address6} ip6 daddr {popA.Address6} counter drop",
            $"ip6 saddr {popA.Address6} ip6 daddr {popB.Address6} counter drop");
        DateTime flippedAt = DateTime.UtcNow;
        long flip = Stopwatch.GetTimestamp();
        lab.FlipTo(LabPopId.B);

        bool failed = await Eventually.WaitAsync(() => client.Error is not null, TimeSpan.FromSeconds(5));
        double seconds = client.ErrorSecondsAfter(flip);
        await Task.Delay(1100);
        long cut = RescueLab.RouterRuleHits(lab, CutTable);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{(ipv6 ? "IPv6" : "IPv4")}, A cut off from B: client error {client.Error ?? "none"}" +
            $"{(failed ? $" {seconds * 1000:0} ms after the flip" : " within 5 s")}; the router dropped {cut} packets between A and B"));
        output.WriteLine(RescueLab.DescribeCounters(lab, rescue.Counters));
        output.WriteLine($"flip at {flippedAt:HH:mm:ss.fff}; B's agent: " +
            string.Join(" | ", rescue.Output(LabPopId.B).Split('\n').Where(l => l.Contains("FlowReset", StringComparison.Ordinal))));

        Assert.True(failed, "the client saw no error within 5 s of the flip: it hangs");
        Assert.Equal("ConnectionReset", client.Error);
        Assert.True(seconds <= ResetBoundSeconds, $"the reset came {seconds:0.000} s after the flip, more than {ResetBoundSeconds} s");
        IReadOnlyDictionary<string, long> atB = rescue.Counters(LabPopId.B);
        Assert.True(atB.GetValueOrDefault("lookups.not_found") >= 1, "POP B's lookup did not end without an owner");
        Assert.True(atB.GetValueOrDefault("lookups.resets") >= 1, "POP B sent no RST");
        Assert.Equal(0, atB.GetValueOrDefault("lookups.found"));
        Assert.True(cut >= 1, "nothing between A and B was dropped: B never asked A");
        Assert.False(owner.Completion.IsCompleted, "A's connection ended although A never heard of the reset");
        Assert.Empty(b.Connections);
    }

    [LabFact]
    public async Task After_SIGKILL_of_the_agent_its_program_keeps_tunnelling_known_flows_new_ones_stall_and_the_restarted_agent_rescues_them()
    {
        const int rate = 64 * 1024;
        using var headroom = new ThreadPoolHeadroom(16);
        using LabTopology lab = LabTool.Up(new LabOptions());
        using LabRescue rescue = await LabRescue.StartAsync(lab, LabTool.Command);
        IPEndPoint anycast = new(IPAddress.Parse(lab.Plan.Anycast4), Port);
        LabPop popB = lab.Pop(LabPopId.B);
        await using SinkServer a = SinkServer.Start(lab.Pop(LabPopId.A).Namespace, new IPEndPoint(IPAddress.Any, Port));
        await using SinkServer b = SinkServer.Start(popB.Namespace, new IPEndPoint(IPAddress.Any, Port));
        ChildProcess? restarted = null;
        var uploads = new List<PacedUpload>();
        try
        {
            // Flow 1: owned by A, tunnelled by B.
            uploads.Add(await PacedUpload.StartAsync(lab.Client, anycast, Endless, rate, Tick));
            SinkConnection flow1 = await a.WaitForConnectionAsync(1, TimeSpan.FromSeconds(5));
            await Eventually.TrueAsync(() => flow1.Received >= 16 * 1024, "flow 1 reaches POP A");
            lab.FlipTo(LabPopId.B);
            long atFlip = flow1.Received;
            await Eventually.TrueAsync(() => rescue.Counters(LabPopId.B).GetValueOrDefault("lookups.found") >= 1 && flow1.Received >= atFlip + 32 * 1024,
                "POP B tunnels flow 1 to A");

            // SIGKILL: the process's descriptors close, but the tcx hook holds the program and the program its maps.
            rescue.Kill(LabPopId.B);
            string filters = string.Join("; ", RescueLab.AttachedPrograms(popB.Namespace, popB.Interface));
            long k0 = flow1.Received;
            await Task.Delay(3000);
            long k1 = flow1.Received;
            output.WriteLine($"after SIGKILL of B's agent, B's uplink holds: {filters}");
            output.WriteLine($"flow 1 moved {(k1 - k0) / 1024} KiB in the 3 s after the kill (sent at {rate / 1024} KiB/s)");
            Assert.Contains("tcx-ingress", filters);
            Assert.Contains("rescue_ingress", filters);
            Assert.True(k1 - k0 >= 64 * 1024, $"flow 1 stalled after the agent was killed: {k1 - k0} bytes in 3 s");
            Assert.Null(uploads[0].Error);

            // Flow 2, made while B's agent is dead: B's program reports its misses to a ring buffer nobody reads and
            // drops them. No RST either: that is the agent's job. The flow stalls, retransmitting.
            lab.FlipTo(LabPopId.A);
            uploads.Add(await PacedUpload.StartAsync(lab.Client, anycast, Endless, rate, Tick));
            SinkConnection flow2 = await a.WaitForConnectionAsync(2, TimeSpan.FromSeconds(5));
            await Eventually.TrueAsync(() => flow2.Received >= 16 * 1024, "flow 2 reaches POP A");
            lab.FlipTo(LabPopId.B);
            await Task.Delay(300);
            long s0 = flow2.Received, f0 = flow1.Received;
            await Task.Delay(2000);
            long s1 = flow2.Received, f1 = flow1.Received;
            output.WriteLine($"agent dead, route at B: flow 2 moved {s1 - s0} bytes in 2 s, flow 1 {(f1 - f0) / 1024} KiB");
            Assert.True(s1 == s0, $"flow 2 moved {s1 - s0} bytes through B although no agent could have found its owner");
            Assert.Null(uploads[1].Error);
            Assert.True(f1 - f0 >= 32 * 1024, $"flow 1 stalled after the flips A and B while the agent was dead: {f1 - f0} bytes in 2 s");

            // The agent starts again: a new program replaces the old one on the tcx hooks, with an empty owner map.
            restarted = await RescueLab.RestartAgentAsync(lab, LabPopId.B);
            long restart = Stopwatch.GetTimestamp();
            List<string> replaced = RescueLab.AttachedPrograms(popB.Namespace, popB.Interface);
            output.WriteLine($"after the restart, B's uplink holds: {string.Join("; ", replaced)}");
            Assert.Equal(["tcx-ingress", "tcx-egress"], replaced.Select(p => p.Split(' ')[0]));
            Assert.DoesNotContain(filters.Split("; ")[0], replaced);
            long r1 = flow1.Received, r2 = flow2.Received;
            await Eventually.TrueAsync(() => flow2.Received >= r2 + 16 * 1024, "flow 2 resumes after the restart (at its next retransmission)",
                TimeSpan.FromSeconds(30));
            double flow2Resumed = RescueLab.Milliseconds(restart, Stopwatch.GetTimestamp());
            await Eventually.TrueAsync(() => flow1.Received >= r1 + 32 * 1024, "flow 1 goes on after the restart");

            // Flow 3, made after the restart, is rescued as well.
            lab.FlipTo(LabPopId.A);
            uploads.Add(await PacedUpload.StartAsync(lab.Client, anycast, Endless, rate, Tick));
            SinkConnection flow3 = await a.WaitForConnectionAsync(3, TimeSpan.FromSeconds(5));
            await Eventually.TrueAsync(() => flow3.Received >= 16 * 1024, "flow 3 reaches POP A");
            lab.FlipTo(LabPopId.B);
            long t3 = flow3.Received;
            await Eventually.TrueAsync(() => flow3.Received >= t3 + 32 * 1024, "POP B's new agent rescues flow 3");
            await Eventually.TrueAsync(() => rescue.Counters(LabPopId.B).GetValueOrDefault("lookups.found") >= 3,
                "the new agent's status shows the owners of flows 1, 2 and 3 found");

            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"after the restart: flow 2 resumed {flow2Resumed:0} ms after the new agent's status appeared; flows 1 and 3 go on"));
            output.WriteLine(RescueLab.DescribeCounters(lab, rescue.Counters));
            Assert.All(uploads, u => Assert.Null(u.Error));
            Assert.All(a.Connections, c => Assert.True(c.Intact, "a flow's bytes arrived at A corrupted"));
            Assert.Equal(3, a.Connections.Count);
            Assert.Empty(b.Connections);
        }
        finally
        {
            uploads.ForEach(u => u.Dispose());
            restarted?.Dispose();
        }
    }
    [LabFact]
    public async Task With_a_pinned_owner_map_an_agent_restarted_after_SIGKILL_keeps_tunnelling_a_moved_flow_without_a_new_lookup()
    {
        const int rate = 64 * 1024;
        using var headroom = new ThreadPoolHeadroom(16);
        using LabTopology lab = LabTool.Up(new LabOptions());
        using var pins = new TestBpffs(lab);
        string bpffs = pins.Path;
        ChildProcess? restarted = null;
        PacedUpload? upload = null;
        try
        {
            using LabRescue rescue = await LabRescue.StartAsync(lab, LabTool.Command,
                extra: new Dictionary<string, object> { ["PinDirectory"] = bpffs });
            IPEndPoint anycast = new(IPAddress.Parse(lab.Plan.Anycast4), Port);
            LabPop popB = lab.Pop(LabPopId.B);
            await using SinkServer a = SinkServer.Start(lab.Pop(LabPopId.A).Namespace, new IPEndPoint(IPAddress.Any, Port));
            await using SinkServer b = SinkServer.Start(popB.Namespace, new IPEndPoint(IPAddress.Any, Port));
            upload = await PacedUpload.StartAsync(lab.Client, anycast, Endless, rate, Tick);
            SinkConnection flow = await a.WaitForConnectionAsync(1, TimeSpan.FromSeconds(5));
            await Eventually.TrueAsync(() => flow.Received >= 16 * 1024, "the flow reaches POP A");
            lab.FlipTo(LabPopId.B);
            long atFlip = flow.Received;
            await Eventually.TrueAsync(() => rescue.Counters(LabPopId.B).GetValueOrDefault("lookups.found") >= 1 && flow.Received >= atFlip + 32 * 1024,
                "POP B tunnels the flow to A");
            string pinned = Path.Combine(bpffs, "rescue_owners_" + LabRescue.AgentName(LabPopId.B));
            Assert.True(File.Exists(pinned), $"B's agent did not pin its owner map at {pinned}");

            // The flow's progress every 10 ms from just before the kill until 3 s after the restart.
            var samples = new List<(long Ticks, long Bytes)>();
            using var sampling = new CancellationTokenSource();
            Task sampler = Task.Run(async () =>
            {
                while (!sampling.IsCancellationRequested)
                {
                    samples.Add((Stopwatch.GetTimestamp(), flow.Received));
                    await Task.Delay(10);
                }
            });
            await Task.Delay(300);
            rescue.Kill(LabPopId.B);
            await Task.Delay(1000);
            // The new agent waits 2 x 300 ms between swapping its programs onto the hooks and the end of its start
            // (before each pin's rename), so that the flow surely sends segments to the new program meanwhile: the
            // program must rescue them from the moment it is on the hook, not hand them to B's stack, which resets
            // the flow.
            restarted = await RescueLab.RestartAgentAsync(lab, LabPopId.B, RescueLab.WithSlowPins(SlowPinMilliseconds));
            long afterRestart = flow.Received;
            await Task.Delay(3000);
            sampling.Cancel();
            await sampler;

            IReadOnlyDictionary<string, long> after = rescue.Counters(LabPopId.B);
            double longestGap = 0;
            for (int i = 1, last = 0; i < samples.Count; i++)
            {
                if (samples[i].Bytes != samples[last].Bytes)
                {
                    longestGap = Math.Max(longestGap, RescueLab.Milliseconds(samples[last].Ticks, samples[i].Ticks));
                    last = i;
                }
            }

            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"kill, 1 s, restart with the pinned map: the flow moved {(flow.Received - afterRestart) / 1024} KiB in the 3 s after the restart, longest gap {longestGap:0} ms over {samples.Count} samples"));
            output.WriteLine("B's restarted agent: " + string.Join(", ", after.Where(c => c.Value != 0).Select(c => $"{c.Key}={c.Value}")));
            Assert.Equal(2, restarted.Output.Split('\n').Count(l => l.StartsWith("slow-pin: held", StringComparison.Ordinal)));
            // The new program found the flow's owner in the map it was handed: it tunnels without a miss, and the new
            // agent never had to ask (an unpinned restart starts with an empty map: a miss and a lookup per moved flow).
            Assert.True(after.GetValueOrDefault("program.tunnelled") > 0, "B's new program tunnelled nothing");
            Assert.Equal(0, after.GetValueOrDefault("program.miss"));
            Assert.Equal(0, after.GetValueOrDefault("lookups.misses"));
            Assert.Equal(0, after.GetValueOrDefault("lookups.lookups"));
            Assert.True(flow.Received - afterRestart >= 128 * 1024, $"the flow stalled after the restart: {flow.Received - afterRestart} bytes in 3 s");
            Assert.True(longestGap < 1000, $"the flow stalled {longestGap:0} ms around the kill and restart");
            Assert.Null(upload.Error);
            Assert.True(flow.Intact, "the flow's bytes arrived at A corrupted");
            Assert.Empty(b.Connections);
        }
        finally
        {
            upload?.Dispose();
            restarted?.Dispose();
        }
    }
}
