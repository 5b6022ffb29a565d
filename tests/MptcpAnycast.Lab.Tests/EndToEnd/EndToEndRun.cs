using System.Diagnostics;
using System.Net;
using System.Text.Json;
using MptcpAnycast.Lab.Tests.Infrastructure;

namespace MptcpAnycast.Lab.Tests.EndToEnd;

/// <summary>An anycast lab with the POP server (the MptcpAnycast transport) running in both POPs, for one end-to-end test.</summary>
internal sealed class EndToEndRun : IDisposable
{
    private readonly List<StreamProbe> _probes = [];

    private EndToEndRun(LabTopology topology, PopServer a, PopServer b)
    {
        Topology = topology;
        PopA = a;
        PopB = b;
    }

    /// <summary>The rescue agents in both POPs, when the run was started with rescue.</summary>
    public LabRescue? Rescue { get; private set; }

    public LabTopology Topology { get; }

    public PopServer PopA { get; }

    public PopServer PopB { get; }

    public static async Task<EndToEndRun> StartAsync(LabOptions options, string? afterJoin = null, bool rescue = false)
    {
        EndToEndRun run = await StartServersAsync(options, afterJoin);
        if (rescue)
        {
            try
            {
                run.Rescue = await LabRescue.StartAsync(run.Topology, LabTool.Command);
            }
            catch
            {
                run.Dispose();
                throw;
            }
        }

        return run;
    }

    private static async Task<EndToEndRun> StartServersAsync(LabOptions options, string? afterJoin)
    {
        LabTopology lab = LabTool.Up(options);
        Task<PopServer>? startA = null, startB = null;
        try
        {
            startA = PopServer.StartAsync(lab, lab.Pop(LabPopId.A), LabTool.Command, afterJoin);
            startB = PopServer.StartAsync(lab, lab.Pop(LabPopId.B), LabTool.Command, afterJoin);
            return new EndToEndRun(lab, await startA, await startB);
        }
        catch
        {
            foreach (Task<PopServer>? start in new[] { startA, startB })
            {
                if (start is { IsCompletedSuccessfully: true })
                {
                    start.Result.Dispose();
                }
            }

            lab.Dispose(); // ends a server still starting, with its namespace
            throw;
        }
    }

    public async Task<StreamProbe> ConnectAsync(bool mptcp = true, bool ipv6 = false, bool dualStack = false)
    {
        var target = new IPEndPoint(IPAddress.Parse(ipv6 ? Topology.Plan.Anycast6 : Topology.Plan.Anycast4), PopServer.Port);
        StreamProbe probe = await StreamProbe.ConnectAsync(mptcp ? "mptcp" : "tcp", Topology.Client, target, mptcp, dualStack, TaskTimeoutExtensions.Within());
        _probes.Add(probe);
        return probe;
    }

    /// <summary>True when the server reports the client's unicast subflow as joined within <paramref name="timeout"/>.</summary>
    public static async Task<bool> WaitForJoinAsync(StreamProbe probe, TimeSpan timeout)
    {
        return (await probe.WaitForJoinAsync(timeout, TaskTimeoutExtensions.Within(timeout + TaskTimeoutExtensions.DefaultTimeout))).GetProperty("state").GetString() == "Joined";
    }

    /// <summary>The server's view of this connection (<c>GET /mptcp</c> on it).</summary>
    public static async Task<JsonElement> ServerStateAsync(StreamProbe probe)
    {
        return JsonDocument.Parse(await probe.GetTextAsync("/mptcp", TaskTimeoutExtensions.Within())).RootElement.Clone();
    }

    /// <summary>
    /// The server's state once it is <paramref name="state"/>, or the last one seen after <paramref name="timeout"/>: the
    /// join timeout is enforced by a sweep whose timing a loaded 2-core machine stretches.
    /// </summary>
    public static async Task<JsonElement> ServerStateAsync(StreamProbe probe, string state, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            JsonElement current = await ServerStateAsync(probe);
            if (current.GetProperty("state").GetString() == state || clock.Elapsed > timeout)
            {
                return current;
            }

            await Task.Delay(100);
        }
    }

    /// <summary>Streams to every probe at once and flips the anycast route to POP B after <paramref name="flipAfter"/>.</summary>
    public async Task StreamAcrossFlipAsync(IReadOnlyList<StreamProbe> probes, double seconds = 3, long rate = 96 * 1024, double flipAfter = 1.2,
        double stallLimitSeconds = 4)
    {
        TimeSpan bound = TimeSpan.FromSeconds(seconds + stallLimitSeconds + 30);
        Task all = Task.WhenAll(probes.Select(p => p.StreamAsync(seconds, rate, TimeSpan.FromSeconds(stallLimitSeconds), TaskTimeoutExtensions.Within(bound))));
        await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(flipAfter)));
        Topology.Flip();
        await all.WithTimeout(bound, "the streams");
    }

    /// <summary>Streams to every probe and flips the anycast route at each of <paramref name="flipsAt"/> (seconds), back and forth.</summary>
    public async Task StreamAcrossFlipsAsync(IReadOnlyList<StreamProbe> probes, double seconds, long rate, double[] flipsAt, double stallLimitSeconds = 6)
    {
        TimeSpan bound = TimeSpan.FromSeconds(seconds + stallLimitSeconds + 60);
        Task all = Task.WhenAll(probes.Select(p => p.StreamAsync(seconds, rate, TimeSpan.FromSeconds(stallLimitSeconds), TaskTimeoutExtensions.Within(bound))));
        var clock = Stopwatch.StartNew();
        foreach (double at in flipsAt)
        {
            TimeSpan wait = TimeSpan.FromSeconds(at) - clock.Elapsed;
            await Task.WhenAny(all, Task.Delay(wait > TimeSpan.Zero ? wait : TimeSpan.Zero));
            Topology.Flip();
        }

        await all.WithTimeout(bound, "the streams");
    }

    public static void AssertSurvived(StreamProbe probe)
    {
        Assert.True(probe.Survived, $"{probe.Name}: {probe.Received}/{probe.Expected} bytes, error: {probe.Error}, pattern intact: {probe.PatternIntact}");
        Assert.Equal(StreamPattern.Sha256(probe.Expected), probe.Sha256);
    }

    /// <summary>
    /// A connection that has no unicast subflow: with rescue it survives the flip intact, tunnelled by POP B to POP A
    /// (the POPs' counters say so); without, it dies at the flip after an intact start.
    /// </summary>
    public void AssertSingleSubflowOutcome(StreamProbe probe)
    {
        if (Rescue is null)
        {
            AssertDiedAfterIntactStart(probe);
            return;
        }

        AssertSurvived(probe);
        // Status files are written once a second.
        Assert.True(SpinWait.SpinUntil(() => Tunnelled() > 0, TimeSpan.FromSeconds(3)), "no POP tunnelled anything: the connection survived some other way");
        long Tunnelled() => Rescue.Counters(LabPopId.A).GetValueOrDefault("program.tunnelled") + Rescue.Counters(LabPopId.B).GetValueOrDefault("program.tunnelled");
    }

    /// <summary>Died at the flip, but every byte before it arrived intact.</summary>
    public static void AssertDiedAfterIntactStart(StreamProbe probe)
    {
        Assert.False(probe.Survived, $"{probe.Name} survived a flip it should not survive");
        Assert.True(probe.PatternIntact, $"{probe.Name}: corrupted data before the flip");
        Assert.True(probe.Received > 0 && probe.Received < probe.Expected, $"{probe.Name}: {probe.Received}/{probe.Expected} bytes");
    }

    public void Dispose()
    {
        _probes.ForEach(p => p.Dispose());
        Rescue?.Dispose();
        PopA.Dispose();
        PopB.Dispose();
        Topology.Dispose();
    }
}
