using System.Diagnostics;
using System.Net;
using System.Text.Json;
using MptcpAnycast.Cli.Lab;
using MptcpAnycast.Lab.Tests.Lab;

namespace MptcpAnycast.Lab.Tests.EndToEnd;

/// <summary>A lab with HelloAnycast (the MptcpAnycast transport) running in both POPs, for one end-to-end test.</summary>
internal sealed class EndToEndRun : IDisposable
{
    private readonly List<StreamProbe> _probes = [];

    private EndToEndRun(TestLab lab, PopServer a, PopServer b)
    {
        Lab = lab;
        PopA = a;
        PopB = b;
    }

    public TestLab Lab { get; }

    public LabTopology Topology => Lab.Topology;

    public PopServer PopA { get; }

    public PopServer PopB { get; }

    public static async Task<EndToEndRun> StartAsync(LabOptions options, string? afterJoin = null)
    {
        string app = PopServer.FindApp() ?? throw new InvalidOperationException("HelloAnycast is not built: dotnet build MptcpAnycast.sln");
        TestLab lab = TestLab.Up(options);
        PopServer? a = null;
        try
        {
            Task<PopServer> startA = PopServer.StartAsync(lab.Topology, lab.Topology.Pop(LabPopId.A), app, afterJoin);
            Task<PopServer> startB = PopServer.StartAsync(lab.Topology, lab.Topology.Pop(LabPopId.B), app, afterJoin);
            a = await startA;
            return new EndToEndRun(lab, a, await startB);
        }
        catch
        {
            a?.Dispose();
            lab.Dispose();
            throw;
        }
    }

    public async Task<StreamProbe> ConnectAsync(bool mptcp = true, bool ipv6 = false, bool dualStack = false)
    {
        var target = new IPEndPoint(IPAddress.Parse(ipv6 ? Topology.Plan.Anycast6 : Topology.Plan.Anycast4), PopServer.Port);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        StreamProbe probe = await StreamProbe.ConnectAsync(mptcp ? "mptcp" : "tcp", Topology.ClientNamespace, target, mptcp, dualStack, cts.Token);
        _probes.Add(probe);
        return probe;
    }

    /// <summary>True when the server reports the client's unicast subflow as joined within <paramref name="timeout"/>.</summary>
    public static async Task<bool> WaitForJoinAsync(StreamProbe probe, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout + TimeSpan.FromSeconds(10));
        return (await probe.WaitForJoinAsync(timeout, cts.Token)).GetProperty("state").GetString() == "Joined";
    }

    /// <summary>The server's view of this connection (<c>GET /mptcp</c> on it).</summary>
    public static async Task<JsonElement> ServerStateAsync(StreamProbe probe)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        return JsonDocument.Parse(await probe.GetTextAsync("/mptcp", cts.Token)).RootElement.Clone();
    }

    /// <summary>Streams to every probe at once and flips the anycast route to POP B after <paramref name="flipAfter"/>.</summary>
    public async Task StreamAcrossFlipAsync(IReadOnlyList<StreamProbe> probes, double seconds = 3, long rate = 96 * 1024, double flipAfter = 1.2,
        double stallLimitSeconds = 4)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(seconds + stallLimitSeconds + 30));
        Task all = Task.WhenAll(probes.Select(p => p.StreamAsync(seconds, rate, TimeSpan.FromSeconds(stallLimitSeconds), cts.Token)));
        await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(flipAfter), cts.Token));
        Topology.Flip();
        await all.WaitAsync(cts.Token);
    }

    /// <summary>Streams to every probe and flips the anycast route at each of <paramref name="flipsAt"/> (seconds), back and forth.</summary>
    public async Task StreamAcrossFlipsAsync(IReadOnlyList<StreamProbe> probes, double seconds, long rate, double[] flipsAt, double stallLimitSeconds = 6)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(seconds + stallLimitSeconds + 60));
        Task all = Task.WhenAll(probes.Select(p => p.StreamAsync(seconds, rate, TimeSpan.FromSeconds(stallLimitSeconds), cts.Token)));
        var clock = Stopwatch.StartNew();
        foreach (double at in flipsAt)
        {
            TimeSpan wait = TimeSpan.FromSeconds(at) - clock.Elapsed;
            await Task.WhenAny(all, Task.Delay(wait > TimeSpan.Zero ? wait : TimeSpan.Zero, cts.Token));
            Topology.Flip();
        }

        await all.WaitAsync(cts.Token);
    }

    public static void AssertSurvived(StreamProbe probe)
    {
        Assert.True(probe.Survived, $"{probe.Name}: {probe.Received}/{probe.Expected} bytes, error: {probe.Error}, pattern intact: {probe.PatternIntact}");
        Assert.Equal(StreamProbe.ExpectedSha256(probe.Expected), probe.Sha256);
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
        PopA.Dispose();
        PopB.Dispose();
        Lab.Dispose();
    }
}
