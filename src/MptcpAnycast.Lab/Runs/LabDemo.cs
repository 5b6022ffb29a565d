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
}

/// <summary>
/// <c>mptcp-anycast lab demo</c>: builds the lab, runs the POP server (<c>TOOL lab serve</c>) in both POPs, streams to
/// an MPTCP client and to a plain TCP client at the same time, moves the anycast route mid-stream, and shows who
/// survived. With rescue (the default) the rescue agent runs in both POPs and the plain TCP client must survive too.
/// Exit 0 only when the MPTCP connection survived (and, with rescue, the plain TCP one). Everything it made is removed at the end, also after a
/// failure or Ctrl-C.
/// </summary>
public static class LabDemo
{
    /// <param name="options">The lab.</param>
    /// <param name="settings">The streams and the flip.</param>
    /// <param name="tool">How to start the tool for the POP servers (<see cref="ToolCommand.OfThisProcess"/> from the tool).</param>
    /// <param name="output">Where the run is told.</param>
    /// <param name="cancellationToken">Ctrl-C: the run stops and removes its lab.</param>
    public static async Task<int> RunAsync(LabOptions options, DemoSettings settings, ToolCommand tool, TextWriter output, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(output);
        output.WriteLine($"Building the lab '{options.Prefix}': client -- router -- POP A / POP B ({Describe(options)})");
        LabTopology lab = LabTopology.Up(options);
        var servers = new List<PopServer>();
        var probes = new List<StreamProbe>();
        ChildProcess? curl = null;
        LabRescue? rescue = null;
        try
        {
            LabPop a = lab.Pop(LabPopId.A), b = lab.Pop(LabPopId.B);
            output.WriteLine($"  anycast {lab.Plan.Anycast4} and {lab.Plan.Anycast6} on both POPs; the router sends them to POP A");
            output.WriteLine($"  POP A announces {string.Join(", ", a.Announced)}; POP B announces {string.Join(", ", b.Announced)}");
            Task<PopServer> startA = PopServer.StartAsync(lab, a, tool, settings.AfterJoin, cancellationToken: cancellationToken);
            Task<PopServer> startB = PopServer.StartAsync(lab, b, tool, settings.AfterJoin, cancellationToken: cancellationToken);
            servers.Add(await startA.ConfigureAwait(false));
            servers.Add(await startB.ConfigureAwait(false));
            string mode = options.PathManager == LabPathManager.Userspace ? "Userspace" : "Kernel";
            output.WriteLine($"  the POP server ({tool} lab serve) listens on port {PopServer.Port} in both POPs: MptcpAnycast transport, mode {mode}, after join {settings.AfterJoin ?? "PreferUnicast (default)"}");

            if (settings.Rescue)
            {
                rescue = await LabRescue.StartAsync(lab, tool, cancellationToken: cancellationToken).ConfigureAwait(false);
                output.WriteLine($"  the rescue agent ({tool} rescue run) runs in both POPs: segments of a connection the other POP owns are tunnelled to it (--no-rescue: off)");
            }
            else
            {
                output.WriteLine("  no rescue agent (--no-rescue): a plain TCP connection dies when the route moves");
            }

            var target = new IPEndPoint(IPAddress.Parse(lab.Plan.Anycast4), PopServer.Port);
            bool dualStack = options.Unicast == LabUnicast.Ipv6Only;
            StreamProbe mptcp = await StreamProbe.ConnectAsync("MPTCP (.NET)", lab.Client, target, mptcp: true, dualStack, cancellationToken).ConfigureAwait(false);
            probes.Add(mptcp);
            StreamProbe tcp = await StreamProbe.ConnectAsync("TCP (.NET)", lab.Client, target, mptcp: false, dualStack: false, cancellationToken).ConfigureAwait(false);
            probes.Add(tcp);

            // Wait for the unicast subflow, then ask the server what it sees on this very connection.
            JsonElement mptcpState = await mptcp.WaitForJoinAsync(TimeSpan.FromSeconds(4), cancellationToken).ConfigureAwait(false);
            JsonElement tcpState = JsonDocument.Parse(await tcp.GetTextAsync("/mptcp", cancellationToken).ConfigureAwait(false)).RootElement;
            output.WriteLine($"  MPTCP client: server says {Text(mptcpState, "state")} ({Text(mptcpState, "stateReason")}); subflows {mptcp.CurrentSubflows()}");
            output.WriteLine($"  TCP client:   server says mptcp={Text(tcpState, "mptcp")} ({Text(tcpState, "fallbackReason")})");

            curl = StartCurl(lab, settings, output);
            output.WriteLine($"Streaming {settings.Seconds:0.#} s at {settings.Rate / 1024} KiB/s to each client; the anycast route moves to POP B after {settings.FlipAfter:0.#} s");
            TimeSpan stallLimit = TimeSpan.FromSeconds(5);
            Task streamM = mptcp.StreamAsync(settings.Seconds, settings.Rate, stallLimit, cancellationToken);
            Task streamT = tcp.StreamAsync(settings.Seconds, settings.Rate, stallLimit, cancellationToken);
            var clock = Stopwatch.StartNew();
            bool flipped = false;
            TimeSpan bound = TimeSpan.FromSeconds(settings.Seconds + 20);
            while (!(streamM.IsCompleted && streamT.IsCompleted) && clock.Elapsed < bound)
            {
                TimeSpan tick = TimeSpan.FromMilliseconds(500);
                if (!flipped && TimeSpan.FromSeconds(settings.FlipAfter) - clock.Elapsed is TimeSpan untilFlip && untilFlip < tick)
                {
                    tick = untilFlip > TimeSpan.Zero ? untilFlip : TimeSpan.Zero;
                }

                await Task.WhenAny(Task.WhenAll(streamM, streamT), Task.Delay(tick, cancellationToken)).ConfigureAwait(false);
                if (!flipped && clock.Elapsed.TotalSeconds >= settings.FlipAfter)
                {
                    LabPopId now = lab.Flip();
                    flipped = true;
                    output.WriteLine($"  t={clock.Elapsed.TotalSeconds,4:0.0}s  >>> flip: the router now sends the anycast address to POP {now} <<<");
                }

                output.WriteLine($"  t={clock.Elapsed.TotalSeconds,4:0.0}s  {Progress(mptcp)}   |   {Progress(tcp)}");
            }

            cancellationToken.ThrowIfCancellationRequested();
            (bool CurlOk, string CurlText)? curlResult = curl is null ? null : await FinishCurlAsync(curl, settings).ConfigureAwait(false);

            output.WriteLine();
            output.WriteLine($"{"client",-14} {"received",-22} {"longest stall",14} {"subflows",9}  result");
            foreach (StreamProbe p in probes)
            {
                string received = $"{p.Received / 1024} / {p.Expected / 1024} KiB";
                string how = p == tcp && rescue is not null ? "rescued; " : "";
                string result = p.Survived ? $"SURVIVED ({how}every byte intact, SHA-256 matches)" : $"DIED: {p.Error ?? (p.PatternIntact ? "incomplete" : "corrupted")}";
                if (p.Survived && !p.HashMatches)
                {
                    result = "CORRUPTED (hash mismatch)";
                }

                output.WriteLine($"{p.Name,-14} {received,-22} {p.LongestGap.TotalMilliseconds,11:0} ms {p.MaxSubflows,9}  {result}");
            }

            if (curlResult is (bool ok, string text))
            {
                output.WriteLine($"{"curl (MPTCP)",-14} {text,-22} {"",14} {"",9}  {(ok ? "SURVIVED" : "DIED")}");
            }

            output.WriteLine();
            foreach (PopServer s in servers)
            {
                LabPop pop = s.Pop!;
                string rsts = pop.Namespace.TryExec("nstat", "-az", "TcpOutRsts").Output
                    .Split('\n').FirstOrDefault(l => l.StartsWith("TcpOutRsts", StringComparison.Ordinal))?.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1] ?? "?";
                output.WriteLine($"POP {pop.Id}: announced on {s.Count("announced")} connection(s), {s.Count("joined")} client subflow(s) joined, {rsts} TCP reset(s) sent");
            }

            if (rescue is not null)
            {
                foreach (LabPopId id in (LabPopId[])[LabPopId.A, LabPopId.B])
                {
                    IReadOnlyDictionary<string, long> c = rescue.Counters(id);
                    output.WriteLine($"POP {id} rescue: {c.GetValueOrDefault("program.tunnelled")} segment(s) tunnelled, {c.GetValueOrDefault("program.decapsulated")} received through the tunnel, {c.GetValueOrDefault("lookups.found")} owner(s) found, {c.GetValueOrDefault("lookups.resets")} reset(s)");
                }
            }

            bool mptcpSurvived = mptcp.HashMatches;
            bool tcpSurvived = tcp.Survived && tcp.HashMatches;
            string tcpText = tcpSurvived
                ? (rescue is null ? "survived too (unexpected without rescue)." : "survived too: POP B tunnelled its segments to POP A (rescued).")
                : (rescue is null ? "did not (run without --no-rescue to rescue it)." : "did NOT, although rescue was on.");
            output.WriteLine(mptcpSurvived
                ? "The MPTCP connection survived the anycast route change; the plain TCP one " + tcpText
                : "The MPTCP connection did NOT survive the route change; the plain TCP one " + tcpText);
            bool expected = mptcpSurvived && (rescue is null || tcpSurvived);
            return expected ? 0 : 1;
        }
        finally
        {
            curl?.Dispose();
            rescue?.Dispose();

            probes.ForEach(p => p.Dispose());
            servers.ForEach(s => s.Dispose());
            IReadOnlyList<string> removed = lab.Down();
            output.WriteLine($"Lab removed ({removed.Count} namespaces).");
        }
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

    /// <summary>Also streams with curl when it can speak MPTCP: <c>curl --mptcp</c> (8.9+) or <c>mptcpize run curl</c>.</summary>
    private static ChildProcess? StartCurl(LabTopology lab, DemoSettings settings, TextWriter output)
    {
        if (!settings.Curl)
        {
            return null;
        }

        bool native = CommandRunner.TryRun("curl", ["--help", "all"]).Output.Contains("--mptcp", StringComparison.Ordinal);
        bool mptcpize = !native && CommandRunner.IsOnPath("mptcpize");
        if (!native && !mptcpize)
        {
            output.WriteLine("  (curl with MPTCP not available: curl 8.9+ or the mptcpize package; skipping the curl client)");
            return null;
        }

        string url = string.Create(CultureInfo.InvariantCulture, $"http://{lab.Plan.Anycast4}:{PopServer.Port}/stream?seconds={settings.Seconds}&rate={settings.Rate}");
        string[] curlArgs = ["-s", "-o", "/dev/null", "-w", "%{size_download} %{http_code}", "--max-time", ((int)settings.Seconds + 15).ToString(CultureInfo.InvariantCulture), url];
        string[] command = native ? ["curl", "--mptcp", .. curlArgs] : ["mptcpize", "run", "curl", .. curlArgs];
        output.WriteLine($"  also: {string.Join(' ', command)}");
        return lab.Client.Start(command);
    }

    private static async Task<(bool, string)> FinishCurlAsync(ChildProcess curl, DemoSettings settings)
    {
        if (!await curl.WaitForExitAsync(TimeSpan.FromSeconds(settings.Seconds + 20)).ConfigureAwait(false))
        {
            curl.Kill();
            return (false, "timed out");
        }

        string text = curl.Output.Trim();
        string[] parts = text.Split(' ');
        long expected = (long)(settings.Seconds * settings.Rate);
        bool ok = curl.ExitCode == 0 && parts.Length == 2 && parts[1] == "200" && long.TryParse(parts[0], CultureInfo.InvariantCulture, out long size) && size == expected;
        long got = parts.Length > 0 && long.TryParse(parts[0], CultureInfo.InvariantCulture, out long g) ? g : 0;
        return (ok, $"{got / 1024} / {expected / 1024} KiB");
    }
}
