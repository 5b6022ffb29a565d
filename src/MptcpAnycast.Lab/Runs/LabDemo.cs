using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;

namespace MptcpAnycast.Lab;

/// <summary>What <c>lab demo</c> does besides the lab's own options.</summary>
public sealed record DemoSettings
{
    public double Seconds { get; init; } = 10;
    public long Rate { get; init; } = 128 * 1024;
    public double FlipAfter { get; init; } = 4;
    public string? AfterJoin { get; init; }
    public bool Curl { get; init; } = true;

    /// <summary>Run the rescue agent in both POPs, so the plain TCP client survives too (<c>--no-rescue</c>: it dies).</summary>
    public bool Rescue { get; init; } = true;

    /// <summary>
    /// Where to draw bytes received over time for each client, the flip marked (<c>--plot FILE</c>): a PNG, or an SVG
    /// when the name ends in <c>.svg</c> (<see cref="DemoPlot.ValidatePath"/>). Default none.
    /// </summary>
    public string? PlotPath { get; init; }
}

/// <summary>
/// <c>mptcp-anycast lab demo</c>: builds the lab, runs the POP server (<c>TOOL lab serve</c>) in both POPs, streams to
/// an MPTCP client and to a plain TCP client at the same time, moves the anycast route mid-stream, and shows who
/// survived, and for a connection that did not, why and what would fix it. With rescue (the default) the rescue agent
/// runs in both POPs and the plain TCP client must survive too. Exit 0 only when the MPTCP connection survived (and,
/// with rescue, the plain TCP one). Everything it made is removed at the end, also after a failure, and within a
/// second or two of Ctrl-C, SIGTERM or SIGHUP, which it catches itself (<see cref="LabInterruption"/>).
/// </summary>
public static class LabDemo
{
    /// <summary>How often the progress line is printed.</summary>
    private static readonly TimeSpan ProgressEvery = TimeSpan.FromMilliseconds(500);

    /// <summary>How often the plot's samples are taken.</summary>
    private static readonly TimeSpan SampleEvery = TimeSpan.FromMilliseconds(100);

    /// <param name="options">The lab.</param>
    /// <param name="settings">The streams, the flip and the plot.</param>
    /// <param name="tool">How to start the tool for the POP servers (<see cref="ToolCommand.OfThisProcess"/> from the tool).</param>
    /// <param name="output">Where the run is told.</param>
    /// <param name="cancellationToken">
    /// The caller's cancellation: like a signal, the run stops and removes its lab. The run catches SIGINT, SIGTERM and
    /// SIGHUP itself while it lasts, so the caller need not (and must not end the process on them before it returns).
    /// </param>
    /// <returns>0 when the expected connections survived, 1 when not or when interrupted.</returns>
    /// <exception cref="ArgumentException">The plot path is bad (<see cref="DemoPlot.ValidatePath"/>).</exception>
    /// <exception cref="InvalidOperationException">The plot cannot be drawn here (<see cref="DemoPlot.CannotDraw"/>), or a step of the lab failed.</exception>
    public static async Task<int> RunAsync(LabOptions options, DemoSettings settings, ToolCommand tool, TextWriter output, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(output);
        if (settings.PlotPath is string plotPath)
        {
            if (DemoPlot.ValidatePath(plotPath) is string plotProblem)
            {
                throw new ArgumentException(plotProblem, nameof(settings));
            }

            // Before the lab is built: a run whose picture cannot be drawn is refused, not spoilt at its end.
            if (DemoPlot.CannotDraw() is string cannotDraw)
            {
                throw new InvalidOperationException(cannotDraw);
            }
        }

        using LabInterruption interruption = LabInterruption.Register(cancellationToken);
        var say = new DemoNarration(output);
        CancellationToken token = interruption.Token;
        say.Line($"Building the lab '{options.Prefix}': client -- router -- POP A / POP B ({Describe(options)})");
        LabTopology lab = LabTopology.Up(options);
        var servers = new List<PopServer>();
        var probes = new List<StreamProbe>();
        ChildProcess? curl = null;
        LabRescue? rescue = null;
        try
        {
            return await RunInLabAsync(lab, settings, tool, say, servers, probes, c => curl = c, r => rescue = r, token).ConfigureAwait(false);
        }
        catch (Exception) when (token.IsCancellationRequested)
        {
            // Whatever the wait was (a start, a connect, a stream), the interruption is the story.
            say.Line("  interrupted: removing the lab");
            return 1;
        }
        finally
        {
            var clock = Stopwatch.StartNew();
            bool interrupted = token.IsCancellationRequested;
            probes.ForEach(p => p.Dispose());
            IReadOnlyList<string>? removed = null;
            if (interrupted)
            {
                // Nobody waits for a graceful stop: deleting the namespaces kills what runs in them (the POP servers, the
                // rescue agents, curl), and nothing they made outlives their namespace.
                removed = lab.Down();
            }

            // Otherwise each child stops on its own (SIGTERM, as systemd does), all at the same time.
            await Task.WhenAll(((IEnumerable<IDisposable?>)[curl, rescue, .. servers]).OfType<IDisposable>()
                .Select(child => Task.Run(child.Dispose, CancellationToken.None))).ConfigureAwait(false);
            removed ??= lab.Down();
            say.Line(interrupted
                ? $"mptcp-anycast lab demo: interrupted by {LabInterruption.Describe(interruption.Signal)}; the lab was removed ({removed.Count} namespaces, {clock.Elapsed.TotalSeconds:0.0} s)."
                : $"Lab removed ({removed.Count} namespaces).");
        }
    }

    private static async Task<int> RunInLabAsync(LabTopology lab, DemoSettings settings, ToolCommand tool, DemoNarration say, List<PopServer> servers,
        List<StreamProbe> probes, Action<ChildProcess?> curlStarted, Action<LabRescue> rescueStarted, CancellationToken token)
    {
        token.ThrowIfCancellationRequested(); // a signal while the lab was built: start nothing in it
        LabOptions options = lab.Options;
        LabPop a = lab.Pop(LabPopId.A), b = lab.Pop(LabPopId.B);
        say.Line($"  anycast {lab.Plan.Anycast4} and {lab.Plan.Anycast6} on both POPs; the router sends them to POP A");
        say.Line($"  POP A announces {string.Join(", ", a.Announced)}; POP B announces {string.Join(", ", b.Announced)}");
        Task<PopServer> startA = PopServer.StartAsync(lab, a, tool, settings.AfterJoin, cancellationToken: token);
        Task<PopServer> startB = PopServer.StartAsync(lab, b, tool, settings.AfterJoin, cancellationToken: token);
        try
        {
            servers.Add(await startA.ConfigureAwait(false));
        }
        finally
        {
            // Whatever became of A, B is ours to stop once it has started.
            try
            {
                servers.Add(await startB.ConfigureAwait(false));
            }
            catch (Exception) when (startA.IsFaulted || startA.IsCanceled)
            {
                // A's failure is the one to tell.
            }
        }

        string mode = options.PathManager == LabPathManager.Userspace ? "Userspace" : "Kernel";
        say.Line($"  the POP server ({tool} lab serve) listens on port {PopServer.Port} in both POPs: MptcpAnycast transport, mode {mode}, after join {settings.AfterJoin ?? "PreferUnicast (default)"}");

        LabRescue? rescue = null;
        if (settings.Rescue)
        {
            rescue = await LabRescue.StartAsync(lab, tool, cancellationToken: token).ConfigureAwait(false);
            rescueStarted(rescue);
            say.Line($"  the rescue agent ({tool} rescue run) runs in both POPs: segments of a connection the other POP owns are tunnelled to it (--no-rescue: off)");
        }
        else
        {
            say.Line("  no rescue agent (--no-rescue): a plain TCP connection dies when the route moves");
        }

        var target = new IPEndPoint(IPAddress.Parse(lab.Plan.Anycast4), PopServer.Port);
        bool dualStack = options.Unicast == LabUnicast.Ipv6Only;
        StreamProbe mptcp = await StreamProbe.ConnectAsync("MPTCP (.NET)", lab.Client, target, mptcp: true, dualStack, token).ConfigureAwait(false);
        probes.Add(mptcp);
        StreamProbe tcp = await StreamProbe.ConnectAsync("TCP (.NET)", lab.Client, target, mptcp: false, dualStack: false, token).ConfigureAwait(false);
        probes.Add(tcp);

        // Wait for the unicast subflow, then ask the server what it sees on this very connection.
        JsonElement mptcpState = await mptcp.WaitForJoinAsync(TimeSpan.FromSeconds(4), token).ConfigureAwait(false);
        JsonElement tcpState = JsonDocument.Parse(await tcp.GetTextAsync("/mptcp", token).ConfigureAwait(false)).RootElement;
        say.Line($"  MPTCP client: server says {Text(mptcpState, "state")} ({Text(mptcpState, "stateReason")}); subflows {mptcp.CurrentSubflows()}");
        say.Line($"  TCP client:   server says mptcp={Text(tcpState, "mptcp")} ({Text(tcpState, "fallbackReason")})");

        ChildProcess? curl = DemoCurlClient.Start(lab, settings, say);
        curlStarted(curl);
        say.Line($"Streaming {settings.Seconds:0.#} s at {settings.Rate / 1024} KiB/s to each client; the anycast route moves to POP B after {settings.FlipAfter:0.#} s");
        (double? flipAt, Dictionary<StreamProbe, DemoTimeline> timelines) = await StreamAndFlipAsync(lab, settings, say, mptcp, tcp, token).ConfigureAwait(false);

        (bool CurlOk, string CurlText)? curlResult = curl is null ? null : await DemoCurlClient.FinishAsync(curl, settings, token).ConfigureAwait(false);

        say.Line();
        say.Line($"{"client",-14} {"received",-22} {"longest stall",14} {"subflows",9}  result");
        foreach (StreamProbe p in probes)
        {
            string received = $"{p.Received / 1024} / {p.Expected / 1024} KiB";
            say.Line($"{p.Name,-14} {received,-22} {p.LongestGap.TotalMilliseconds,11:0} ms {p.MaxSubflows,9}  {Result(p, p == tcp && rescue is not null)}");
        }

        if (curlResult is (bool ok, string text))
        {
            say.Line($"{"curl (MPTCP)",-14} {text,-22} {"",14} {"",9}  {(ok ? "SURVIVED" : "DIED")}");
        }

        say.Line();
        foreach (PopServer s in servers)
        {
            LabPop pop = s.Pop!;
            string rsts = pop.Namespace.TryExec("nstat", "-az", "TcpOutRsts").Output
                .Split('\n').FirstOrDefault(l => l.StartsWith("TcpOutRsts", StringComparison.Ordinal))?.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1] ?? "?";
            say.Line($"POP {pop.Id}: announced on {s.Count("announced")} connection(s), {s.Count("joined")} client subflow(s) joined, {rsts} TCP reset(s) sent");
        }

        if (rescue is not null)
        {
            foreach (LabPopId id in (LabPopId[])[LabPopId.A, LabPopId.B])
            {
                IReadOnlyDictionary<string, long> c = rescue.Counters(id);
                say.Line($"POP {id} rescue: {c.GetValueOrDefault("program.tunnelled")} segment(s) tunnelled, {c.GetValueOrDefault("program.decapsulated")} received through the tunnel, {c.GetValueOrDefault("lookups.found")} owner(s) found, {c.GetValueOrDefault("lookups.resets")} reset(s)");
            }
        }

        bool mptcpSurvived = mptcp.HashMatches;
        bool tcpSurvived = tcp.Survived && tcp.HashMatches;
        string tcpText = tcpSurvived
            ? (rescue is null ? "survived too (unexpected without rescue)." : "survived too: POP B tunnelled its segments to POP A (rescued).")
            : (rescue is null ? "did not (run without --no-rescue to rescue it)." : "did NOT, although rescue was on.");
        string outcome = mptcpSurvived
            ? "The MPTCP connection survived the anycast route change; the plain TCP one " + tcpText
            : "The MPTCP connection did NOT survive the route change; the plain TCP one " + tcpText;
        say.Line(outcome);
        if (!mptcpSurvived)
        {
            DemoDiagnosis why = DemoDiagnosis.ForMptcp(options, mptcpState, mptcp.Error, DemoDiagnosis.ClientEvidence.Read(lab.Client));
            say.Wrapped("  why:  ", why.Reason);
            say.Wrapped("  fix:  ", why.Fix);
        }
        else if (rescue is not null && Text(mptcpState, "state") != "Joined")
        {
            // Survived only because the rescue agent tunnelled it too: without rescue it dies, and this is why.
            DemoDiagnosis why = DemoDiagnosis.ForMptcp(options, mptcpState, null, DemoDiagnosis.ClientEvidence.Read(lab.Client));
            say.Wrapped("  note: ", $"the MPTCP connection survived only through the rescue agent, as a plain TCP one does: {why.Reason}");
            say.Wrapped("  fix:  ", why.Fix);
        }

        if (settings.PlotPath is string plotPath)
        {
            string tcpShort = tcpSurvived ? (rescue is null ? "survived" : "survived (rescued)") : (rescue is null ? "died (no rescue)" : "died although rescued");
            string shortOutcome = $"MPTCP {(mptcpSurvived ? "survived" : "did NOT survive")}, plain TCP {tcpShort}";
            WritePlot(plotPath, lab, settings, rescue is not null, shortOutcome, flipAt, probes.Select(p => timelines[p].Record(p, ShortResult(p, p == tcp && rescue is not null))), say);
        }

        bool expected = mptcpSurvived && (rescue is null || tcpSurvived);
        return expected ? 0 : 1;
    }

    /// <summary>
    /// Streams to both clients, flips the route after <see cref="DemoSettings.FlipAfter"/>, prints the progress and
    /// samples it for the plot, until both streams end. Every wait ends at once on <paramref name="token"/>, before
    /// anything more is printed.
    /// </summary>
    private static async Task<(double? FlipAt, Dictionary<StreamProbe, DemoTimeline> Timelines)> StreamAndFlipAsync(LabTopology lab, DemoSettings settings,
        DemoNarration say, StreamProbe mptcp, StreamProbe tcp, CancellationToken token)
    {
        TimeSpan stallLimit = TimeSpan.FromSeconds(5);
        Task streams = Task.WhenAll(mptcp.StreamAsync(settings.Seconds, settings.Rate, stallLimit, token), tcp.StreamAsync(settings.Seconds, settings.Rate, stallLimit, token));
        var timelines = new Dictionary<StreamProbe, DemoTimeline> { [mptcp] = new(), [tcp] = new() };
        var clock = Stopwatch.StartNew();
        TimeSpan flipAt = TimeSpan.FromSeconds(settings.FlipAfter), nextProgress = ProgressEvery, nextSample = TimeSpan.Zero;
        double? flippedAt = null;
        TimeSpan bound = TimeSpan.FromSeconds(settings.Seconds + 20);
        while (!streams.IsCompleted && clock.Elapsed < bound)
        {
            TimeSpan now = clock.Elapsed;
            if (now >= nextSample)
            {
                foreach ((StreamProbe p, DemoTimeline t) in timelines)
                {
                    t.Sample(now.TotalSeconds, p);
                }

                nextSample += SampleEvery;
            }

            if (now >= nextProgress)
            {
                say.Line($"  t={now.TotalSeconds,4:0.0}s  {Progress(mptcp)}   |   {Progress(tcp)}");
                nextProgress += ProgressEvery;
            }

            if (flippedAt is null && now >= flipAt)
            {
                // The moment the IPv4 route moves, the flip's first command (IPv6 follows).
                flippedAt = clock.Elapsed.TotalSeconds;
                LabPopId to = lab.Flip();
                say.Line($"  t={flippedAt,4:0.0}s  >>> flip: the router now sends the anycast address to POP {to} <<<");
            }

            TimeSpan next = Min(nextSample, flippedAt is null ? Min(nextProgress, flipAt) : nextProgress);
            TimeSpan wait = next - clock.Elapsed;
            if (wait > TimeSpan.Zero)
            {
                await Task.WhenAny(streams, Task.Delay(wait, token)).ConfigureAwait(false);
            }

            token.ThrowIfCancellationRequested();
        }

        token.ThrowIfCancellationRequested();
        foreach ((StreamProbe p, DemoTimeline t) in timelines)
        {
            t.Sample(clock.Elapsed.TotalSeconds, p);
        }

        say.Line($"  t={clock.Elapsed.TotalSeconds,4:0.0}s  {Progress(mptcp)}   |   {Progress(tcp)}");
        return (flippedAt, timelines);
    }

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;

    private static string Result(StreamProbe p, bool rescued)
    {
        string how = rescued ? "rescued; " : "";
        if (p.Survived && !p.HashMatches)
        {
            return "CORRUPTED (hash mismatch)";
        }

        return p.Survived ? $"SURVIVED ({how}every byte intact, SHA-256 matches)" : $"DIED: {p.Error ?? (p.PatternIntact ? "incomplete" : "corrupted")}";
    }

    private static string ShortResult(StreamProbe p, bool rescued) =>
        p.HashMatches ? (rescued ? "SURVIVED (rescued)" : "SURVIVED") : p.Survived ? "CORRUPTED" : $"DIED: {p.Error ?? (p.PatternIntact ? "incomplete" : "corrupted")}";

    private static void WritePlot(string path, LabTopology lab, DemoSettings settings, bool rescue, string outcome, double? flipAt,
        IEnumerable<DemoClientRecord> clients, DemoNarration say)
    {
        string @case = $"{Describe(lab.Options)}, {(rescue ? "rescue on" : "no rescue")}";
        var record = new DemoRecord(@case, outcome, flipAt, lab.Active, (long)(settings.Seconds * settings.Rate), [.. clients]);
        DemoPlot.Write(path, record);
        say.Line(DemoPlot.HasFonts
            ? $"Plot: {Path.GetFullPath(path)}"
            : $"Plot: {Path.GetFullPath(path)} (no font on this machine, so it has no text: apt-get install fonts-dejavu-core)");
    }

    private static string Progress(StreamProbe p)
    {
        string state = p.Complete ? "done" : p.Error is not null ? "DEAD" : "";
        return $"{p.Name}: {p.Received / 1024,5} KiB, subflows {p.CurrentSubflows()} {state,-4}";
    }

    private static string Text(JsonElement json, string name)
        => json.TryGetProperty(name, out JsonElement v) ? v.ToString() : "?";

    private static string Describe(LabOptions o)
    {
        var parts = new List<string> { $"{LabNames.Of(o.PathManager)} path manager", $"client {LabNames.Of(o.Client)}", $"unicast {LabNames.Of(o.Unicast)}" };
        if (o.Nat)
        {
            parts.Add("client behind NAT");
        }

        if (o.Firewall)
        {
            parts.Add("firewall drops joins");
        }

        if (o.StripMptcp)
        {
            parts.Add("MPTCP option stripped");
        }

        return string.Join(", ", parts);
    }
}
