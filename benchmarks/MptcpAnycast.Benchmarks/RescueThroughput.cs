using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Lab;

namespace MptcpAnycast.Benchmarks;

/// <summary>
/// <c>rescue-throughput [--rounds N] [--seconds S] [--slices P] [--ipv6] [--phases agent,tunnel,relay] [--access-mbit M] [--backbone] [--tool PATH]</c>: plain TCP bulk
/// transfers between the client of a two-POP anycast lab and a sink/source server in POP A, with the rescue agent
/// (<c>mptcp-anycast rescue run</c>) in both POPs.
/// <list type="bullet">
/// <item>Phase <c>tunnel</c>: the connection is made with the route at A; then the route stays at A (direct) or moves to
/// B (tunnelled: B's program sends the client's segments to A in IPIP/IP6IP6, A takes them out). Upload
/// (client → server: the data is tunnelled) and download (server → client: only the client's ACKs are).</item>
/// <item>Phase <c>agent</c>: the route at A all the time; the agents running (the program attached to A's uplink, seeing
/// every segment and clamping the SYN-ACK's MSS) or not at all.</item>
/// <item>Phase <c>relay</c> (not run by default): the control for the tunnel's longer path. In the lab a tunnelled
/// segment crosses the router twice and two more veth links (client → router → B → router → A) on the same CPUs, so
/// this phase sends it the same way by plain IP forwarding in B, no agents: route at A versus "relayed" by B.</item>
/// </list>
/// Each measurement is a fresh connection: 0.5 s of transfer, the flip (tunnelled only), 1.5 s to settle (the owner
/// lookup, retransmissions), then S seconds counted at the receiver. The two sides alternate within each round, in an
/// order that alternates round by round; the ratio is taken per round and its median and range printed. The sender's
/// retransmissions over the window are printed beside each sample, and a tunnelled sample must show B tunnelling.
/// <c>--access-mbit M</c> shapes the client's access link to M Mbit/s in both directions (tbf on the client's and the
/// router's side of it), so that the link, not the lab's two CPUs, bounds a flow, as the path does on the Internet.
/// <c>--backbone</c> gives B and A a link of their own, which B's routes to A take instead of the router: the tunnel
/// (B's program routes the tunnel by the routing table, which it can ask with forwarding on B's uplink) and the relay.
/// <c>--slices P</c> measures phases <c>tunnel</c> (the default then) and <c>relay</c> another way: one connection per
/// direction for the whole phase, P pairs of 1 s slices, one with the route at A and one at B, the order within a pair
/// alternating (A B, B A, A B, ...: the route moves every 2 s, so half the slices of each side follow a move), each
/// slice counted at the receiver over its last 0.6 s. Both sides of a pair are the same flow a second apart, so the
/// machine's drift from one fresh connection to the next (±20% here) cancels out of the ratio.
/// </summary>
internal static class RescueThroughput
{
    private const int Port = 5201;
    private const int Chunk = 128 * 1024;
    private static readonly TimeSpan BeforeFlip = TimeSpan.FromSeconds(0.5);
    private static readonly TimeSpan Settle = TimeSpan.FromSeconds(1.5);
    private static readonly TimeSpan AgentSettle = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan SliceSettle = TimeSpan.FromSeconds(0.4);
    private static readonly TimeSpan SliceCounted = TimeSpan.FromSeconds(0.6);

    private enum Direction
    {
        Upload,
        Download,
    }

    /// <summary>
    /// One measurement: throughput at the receiver, the sender's retransmissions in the window, and what went through B:
    /// packets its program tunnelled (with the agents; GSO packets, up to 64 KiB each) or it forwarded (relay), and the
    /// packets A's program decapsulated.
    /// </summary>
    private sealed record Sample(double Mbps, long Retransmits, long ViaB, long DecapsulatedByA);

    public static async Task<int> RunAsync(string[] args)
    {
        int rounds = 5;
        double seconds = 4;
        bool ipv6 = false;
        string[] phases = ["agent", "tunnel"];
        string tool = Path.Combine(AppContext.BaseDirectory, "mptcp-anycast.dll");
        int accessMbit = 0;
        bool backbone = false;
        int slices = 0;
        bool phasesGiven = false;
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new UsageException($"rescue-throughput: {args[i]} needs a value");
            switch (args[i])
            {
                case "--rounds":
                    rounds = Arguments.Int("rescue-throughput", "--rounds", Value(), 1, 50);
                    break;
                case "--seconds":
                    seconds = Arguments.Int("rescue-throughput", "--seconds", Value(), 1, 60);
                    break;
                case "--slices":
                    slices = Arguments.Int("rescue-throughput", "--slices", Value(), 2, 1000);
                    break;
                case "--ipv6":
                    ipv6 = true;
                    break;
                case "--phases":
                    phases = Value().Split(',', StringSplitOptions.RemoveEmptyEntries);
                    phasesGiven = true;
                    if (phases.Length == 0 || phases.Any(p => p is not ("tunnel" or "agent" or "relay")))
                    {
                        throw new UsageException("rescue-throughput: --phases takes agent, tunnel, relay (comma-separated)");
                    }

                    break;
                case "--tool":
                    tool = Value();
                    break;
                case "--access-mbit":
                    accessMbit = Arguments.Int("rescue-throughput", "--access-mbit", Value(), 10, 100_000);
                    break;
                case "--backbone":
                    backbone = true;
                    break;
                default:
                    throw new UsageException($"rescue-throughput takes --rounds N, --seconds S, --slices P, --ipv6, --phases agent,tunnel,relay, --access-mbit M, --backbone, --tool PATH; got '{args[i]}'");
            }
        }

        if (slices > 0 && !phasesGiven)
        {
            phases = ["tunnel"];
        }

        if (slices > 0 && phases.Contains("agent"))
        {
            throw new UsageException("rescue-throughput: --slices measures phases tunnel and relay; give --phases tunnel, relay or both");
        }

        if (Environment.UserName != "root")
        {
            Console.Error.WriteLine("rescue-throughput needs root (it builds the anycast lab in network namespaces)");
            return 1;
        }

        ToolCommand command = ToolCommand.Dotnet(tool);
        LabTopology lab = LabTopology.Up(new LabOptions { Pops = 2, Prefix = LabPrefix.New("mplb") });
        try
        {
            if (accessMbit > 0)
            {
                ShapeAccessLink(lab, accessMbit);
            }

            if (backbone)
            {
                LabBackbone.Add(lab);
            }

            IPAddress anycast = IPAddress.Parse(ipv6 ? lab.Plan.Anycast6 : lab.Plan.Anycast4);
            await using var server = Server.Start(lab.Pop(LabPopId.A).Namespace, new IPEndPoint(ipv6 ? IPAddress.IPv6Any : IPAddress.Any, Port));
            var bench = new Bench(lab, server, new IPEndPoint(anycast, Port), TimeSpan.FromSeconds(seconds));
            string method = slices > 0
                ? $"{slices} pairs of 1 s slices of one connection per direction, the last 0.6 s of each counted"
                : $"{rounds} rounds, {seconds} s counted per sample after 2 s";
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"# rescue throughput: plain TCP, {(ipv6 ? "IPv6" : "IPv4")}, lab {lab.Options.Prefix} (2 POPs), access link {(accessMbit > 0 ? accessMbit + " Mbit/s" : "unshaped")}, {(backbone ? "B reaches A over a link of their own" : "B reaches A through the router")}, {method}; Linux {Environment.OSVersion.Version}, {Environment.ProcessorCount} CPUs"));

            if (phases.Contains("agent"))
            {
                // The agents' program on A's uplink sees every segment of a local connection: with it versus without it.
                var off = new Dictionary<Direction, List<Sample>> { [Direction.Upload] = [], [Direction.Download] = [] };
                var on = new Dictionary<Direction, List<Sample>> { [Direction.Upload] = [], [Direction.Download] = [] };
                for (int round = 1; round <= rounds; round++)
                {
                    foreach (bool running in round % 2 == 1 ? (bool[])[false, true] : [true, false])
                    {
                        using LabRescue? rescue = running ? await LabRescue.StartAsync(lab, command) : null;
                        // Let the agents' start-up (JIT, first status writes) pass, so that the "agent" side measures
                        // running agents, not starting ones; the other side waits as long.
                        await Task.Delay(AgentSettle);
                        foreach (Direction direction in Enum.GetValues<Direction>())
                        {
                            Sample sample = await bench.MeasureAsync(direction, tunnelled: false, rescue);
                            (running ? on : off)[direction].Add(sample);
                            Print(round, direction, running ? "agent" : "no agent", sample);
                        }
                    }
                }

                Summary("agent running, route at A / no agent", on, off);
            }

            if (phases.Contains("tunnel") && slices > 0)
            {
                using LabRescue rescue = await LabRescue.StartAsync(lab, command);
                await Task.Delay(AgentSettle);
                foreach (Direction direction in Enum.GetValues<Direction>())
                {
                    await bench.SlicesAsync(direction, slices, rescue, "tunnelled");
                }
            }
            else if (phases.Contains("tunnel"))
            {
                using LabRescue rescue = await LabRescue.StartAsync(lab, command);
                var direct = new Dictionary<Direction, List<Sample>> { [Direction.Upload] = [], [Direction.Download] = [] };
                var tunnelled = new Dictionary<Direction, List<Sample>> { [Direction.Upload] = [], [Direction.Download] = [] };
                for (int round = 1; round <= rounds; round++)
                {
                    foreach (bool viaB in round % 2 == 1 ? (bool[])[false, true] : [true, false])
                    {
                        foreach (Direction direction in Enum.GetValues<Direction>())
                        {
                            Sample sample = await bench.MeasureAsync(direction, viaB, rescue);
                            (viaB ? tunnelled : direct)[direction].Add(sample);
                            Print(round, direction, viaB ? "route at B (tunnelled)" : "route at A (direct)", sample);
                        }
                    }
                }

                Summary("route at B, tunnelled to A / route at A, direct", tunnelled, direct);
            }

            if (phases.Contains("relay"))
            {
                // The control for the tunnel's extra path: the same hops, client -> router -> B -> router -> A, by plain
                // IP forwarding in B (no program, no outer header). No agents: B's program would take these segments.
                var direct = new Dictionary<Direction, List<Sample>> { [Direction.Upload] = [], [Direction.Download] = [] };
                var relayed = new Dictionary<Direction, List<Sample>> { [Direction.Upload] = [], [Direction.Download] = [] };
                Relay(lab, on: true, backbone);
                try
                {
                    if (slices > 0)
                    {
                        foreach (Direction direction in Enum.GetValues<Direction>())
                        {
                            await bench.SlicesAsync(direction, slices, rescue: null, "relayed");
                        }
                    }

                    for (int round = 1; slices == 0 && round <= rounds; round++)
                    {
                        foreach (bool viaB in round % 2 == 1 ? (bool[])[false, true] : [true, false])
                        {
                            foreach (Direction direction in Enum.GetValues<Direction>())
                            {
                                Sample sample = await bench.MeasureAsync(direction, viaB, rescue: null);
                                (viaB ? relayed : direct)[direction].Add(sample);
                                Print(round, direction, viaB ? "route at B (relayed)" : "route at A (direct)", sample);
                            }
                        }
                    }
                }
                finally
                {
                    Relay(lab, on: false, backbone);
                }

                if (slices == 0)
                {
                    Summary("route at B, forwarded by B to A (no agent) / route at A, direct (no agent)", relayed, direct);
                }
            }

            return 0;
        }
        finally
        {
            lab.Down();
        }
    }

    /// <summary>
    /// Shapes the client's link to the router to <paramref name="mbit"/> Mbit/s each way. The bucket holds 4 ms at that
    /// rate (at least 64 KiB, one GSO packet), so that a flow is held to the rate rather than to the bucket's refills.
    /// </summary>
    private static void ShapeAccessLink(LabTopology lab, int mbit)
    {
        long burstBytes = Math.Max(64 * 1024, (long)mbit * 1_000_000 / 8 / 250);
        string[] Tbf(string device) => ["qdisc", "replace", "dev", device, "root", "tbf", "rate", mbit + "mbit",
            "burst", burstBytes.ToString(CultureInfo.InvariantCulture), "latency", "20ms"];
        lab.Client.Exec("tc", Tbf(LabTopology.UplinkInterface));
        lab.Router.Exec("tc", Tbf("to-client"));
    }

    /// <summary>
    /// Makes POP B a plain router for the anycast addresses (on) or a POP again (off): B gives up the addresses and
    /// forwards, and the router sends what comes back from B to A (a rule for packets arriving from B), not to B again.
    /// </summary>
    private static void Relay(LabTopology lab, bool on, bool backbone)
    {
        if (backbone)
        {
            // Over the POPs' own link: B hands the anycast-addressed segments to it, and A takes them in as on its uplink.
            LabNamespace pop = lab.Pop(LabPopId.B).Namespace;
            pop.Ip("addr", on ? "del" : "add", lab.Plan.Anycast4 + "/32", "dev", "lo");
            if (on)
            {
                pop.Ip("-6", "addr", "del", lab.Plan.Anycast6 + "/128", "dev", "lo");
            }
            else
            {
                pop.Ip("-6", "addr", "add", lab.Plan.Anycast6 + "/128", "dev", "lo", "nodad");
            }

            pop.Ip("route", on ? "add" : "del", lab.Plan.Anycast4 + "/32", "dev", LabBackbone.Interface);
            pop.Ip("-6", "route", on ? "add" : "del", lab.Plan.Anycast6 + "/128", "dev", LabBackbone.Interface);
            pop.Sysctl("net.ipv4.ip_forward", on ? "1" : "0");
            pop.Sysctl("net.ipv6.conf.all.forwarding", on ? "1" : "0");
            return;
        }

        LabNamespace b = lab.Pop(LabPopId.B).Namespace;
        LabPop a = lab.Pop(LabPopId.A);
        string fromB = lab.Pop(LabPopId.B).RouterInterface;
        string verb = on ? "add" : "del";
        if (on)
        {
            b.Ip("addr", "del", lab.Plan.Anycast4 + "/32", "dev", "lo");
            b.Ip("addr", "del", lab.Plan.Anycast6 + "/128", "dev", "lo");
        }
        else
        {
            b.Ip("addr", "add", lab.Plan.Anycast4 + "/32", "dev", "lo");
            b.Ip("addr", "add", lab.Plan.Anycast6 + "/128", "dev", "lo", "nodad");
        }

        string flag = on ? "1" : "0";
        b.Sysctl("net.ipv4.ip_forward", flag);
        b.Sysctl("net.ipv6.conf.all.forwarding", flag);
        // B sends the packets back out of the interface they came in by: no ICMP redirects to the router about it.
        b.Sysctl("net.ipv4.conf.all.send_redirects", on ? "0" : "1");
        b.Sysctl($"net.ipv4.conf.{LabTopology.UplinkInterface}.send_redirects", on ? "0" : "1");
        lab.Router.Ip("rule", verb, "iif", fromB, "lookup", "250", "pref", "250");
        lab.Router.Ip("-6", "rule", verb, "iif", fromB, "lookup", "250", "pref", "250");
        if (on)
        {
            lab.Router.Ip("route", "add", lab.Plan.Anycast4 + "/32", "via", a.Address4, "table", "250");
            lab.Router.Ip("-6", "route", "add", lab.Plan.Anycast6 + "/128", "via", a.Address6, "table", "250");
        }
        else
        {
            lab.Router.Ip("route", "flush", "table", "250");
            lab.Router.Ip("-6", "route", "flush", "table", "250");
        }
    }

    private static void Print(int round, Direction direction, string side, Sample sample) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"round {round} {direction.ToString().ToLowerInvariant(),-8} {side,-24} {sample.Mbps,8:0} Mbit/s  retransmits {sample.Retransmits,5}  via B {sample.ViaB,7}  decapsulated by A {sample.DecapsulatedByA,7}"));

    private static void Summary(string what, Dictionary<Direction, List<Sample>> numerator, Dictionary<Direction, List<Sample>> denominator)
    {
        Console.WriteLine($"# {what}: per-round ratios, median (min-max); medians of the samples in Mbit/s");
        foreach (Direction direction in Enum.GetValues<Direction>())
        {
            double[] ratios = [.. numerator[direction].Zip(denominator[direction], (n, d) => n.Mbps / d.Mbps)];
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{direction.ToString().ToLowerInvariant(),-8} ratio {Median(ratios):0.000} ({ratios.Min():0.000}-{ratios.Max():0.000})   {Median([.. numerator[direction].Select(s => s.Mbps)]):0} vs {Median([.. denominator[direction].Select(s => s.Mbps)]):0} Mbit/s"));
        }
    }

    private static double Median(double[] values) => Quantiles.Of([.. values.Order()], 0.5);

    private static (double Q1, double Median, double Q3) Quartiles(double[] values)
    {
        double[] sorted = [.. values.Order()];
        return (Quantiles.Of(sorted, 0.25), Quantiles.Of(sorted, 0.5), Quantiles.Of(sorted, 0.75));
    }


    /// <summary>One measurement at a time against the server in POP A.</summary>
    private sealed class Bench(LabTopology lab, Server server, IPEndPoint target, TimeSpan window)
    {
        public async Task<Sample> MeasureAsync(Direction direction, bool tunnelled, LabRescue? rescue)
        {
            lab.FlipTo(LabPopId.A);
            if (rescue is not null)
            {
                // The agents write their status every second: let one be written after the previous sample ended, so
                // that its tail is not counted in this one.
                await Task.Delay(TimeSpan.FromSeconds(1.2));
            }

            LabNamespace sender = direction == Direction.Upload ? lab.Client : lab.Pop(LabPopId.A).Namespace;
            long tunnelledBefore = rescue?.Counters(LabPopId.B).GetValueOrDefault("program.tunnelled") ?? 0;
            long decapsulatedBefore = rescue?.Counters(LabPopId.A).GetValueOrDefault("program.decapsulated") ?? 0;
            string forwarded = target.AddressFamily == AddressFamily.InterNetworkV6 ? "Ip6OutForwDatagrams" : "IpForwDatagrams";
            long forwardedBefore = lab.Pop(LabPopId.B).Namespace.Counter(forwarded);
            // A hard bound on the whole measurement: the transfer stops by itself if this method never gets to stop it.
            using var bound = new CancellationTokenSource(BeforeFlip + Settle + window + TimeSpan.FromSeconds(30));
            try
            {
                await using BulkFlow flow = await BulkFlow.OpenAsync(lab.Client, server, target, direction, bound.Token);
                Transfer receiver = flow.Receiver;
                await Task.Delay(BeforeFlip);
                if (tunnelled)
                {
                    lab.FlipTo(LabPopId.B);
                }

                await Task.Delay(Settle);
                long retransmitsBefore = sender.Counter("TcpRetransSegs");
                long bytesBefore = receiver.Bytes;
                long start = Stopwatch.GetTimestamp();
                await Task.Delay(window);
                long bytes = receiver.Bytes - bytesBefore;
                TimeSpan elapsed = Stopwatch.GetElapsedTime(start);
                long retransmits = sender.Counter("TcpRetransSegs") - retransmitsBefore;
                if (flow.Ended)
                {
                    throw new InvalidOperationException($"the {direction} transfer ended during the measurement ({(tunnelled ? "tunnelled" : "direct")})");
                }

                long tunnelledByB = 0, decapsulatedByA = 0;
                long forwardedByB = lab.Pop(LabPopId.B).Namespace.Counter(forwarded) - forwardedBefore;
                if (rescue is not null)
                {
                    // The agents write their status every second: wait (bounded) for one written after the window.
                    var clock = Stopwatch.StartNew();
                    do
                    {
                        await Task.Delay(250);
                        tunnelledByB = rescue.Counters(LabPopId.B).GetValueOrDefault("program.tunnelled") - tunnelledBefore;
                        decapsulatedByA = rescue.Counters(LabPopId.A).GetValueOrDefault("program.decapsulated") - decapsulatedBefore;
                    }
                    while (tunnelled && tunnelledByB == 0 && clock.Elapsed < TimeSpan.FromSeconds(3));

                    if (tunnelled && tunnelledByB == 0)
                    {
                        throw new InvalidOperationException("route at B, but B's program tunnelled nothing");
                    }
                }

                else if (tunnelled && forwardedByB == 0)
                {
                    throw new InvalidOperationException("route at B, no agents, but B forwarded nothing");
                }

                return new Sample(bytes * 8 / elapsed.TotalSeconds / 1e6, retransmits, rescue is null ? forwardedByB : tunnelledByB, decapsulatedByA);
            }
            finally
            {
                lab.FlipTo(LabPopId.A);
            }
        }

        /// <summary>
        /// One connection for <paramref name="pairs"/> pairs of slices: in each pair the route is at A for one slice and at
        /// B for the other (<paramref name="viaB"/>: B tunnels, or relays without agents), the order alternating pair by
        /// pair. Prints every pair and the summary; throws when B carried nothing or the transfer ended.
        /// </summary>
        public async Task SlicesAsync(Direction direction, int pairs, LabRescue? rescue, string viaB)
        {
            lab.FlipTo(LabPopId.A);
            LabNamespace sender = direction == Direction.Upload ? lab.Client : lab.Pop(LabPopId.A).Namespace;
            string forwarded = target.AddressFamily == AddressFamily.InterNetworkV6 ? "Ip6OutForwDatagrams" : "IpForwDatagrams";
            TimeSpan slice = SliceSettle + SliceCounted;
            using var bound = new CancellationTokenSource(Settle + (2 * pairs + 2) * (slice + TimeSpan.FromSeconds(1)) + TimeSpan.FromSeconds(30));
            try
            {
                await using BulkFlow flow = await BulkFlow.OpenAsync(lab.Client, server, target, direction, bound.Token);
                Transfer receiver = flow.Receiver;

                // A first slice at B lets B learn the owner, so that every counted slice at B starts with it known.
                await Task.Delay(Settle);
                lab.FlipTo(LabPopId.B);
                await Task.Delay(Settle);
                long tunnelledBefore = rescue?.Counters(LabPopId.B).GetValueOrDefault("program.tunnelled") ?? 0;
                long decapsulatedBefore = rescue?.Counters(LabPopId.A).GetValueOrDefault("program.decapsulated") ?? 0;
                long forwardedBefore = lab.Pop(LabPopId.B).Namespace.Counter(forwarded);

                var ratios = new double[pairs];
                var atA = new double[pairs];
                var atB = new double[pairs];
                long retransmitsA = 0, retransmitsB = 0;
                for (int pair = 0; pair < pairs; pair++)
                {
                    foreach (LabPopId side in pair % 2 == 0 ? (LabPopId[])[LabPopId.A, LabPopId.B] : [LabPopId.B, LabPopId.A])
                    {
                        lab.FlipTo(side);
                        await Task.Delay(SliceSettle);
                        long retransmits = sender.Counter("TcpRetransSegs");
                        long bytes = receiver.Bytes;
                        long start = Stopwatch.GetTimestamp();
                        await Task.Delay(SliceCounted);
                        double mbps = (receiver.Bytes - bytes) * 8 / Stopwatch.GetElapsedTime(start).TotalSeconds / 1e6;
                        retransmits = sender.Counter("TcpRetransSegs") - retransmits;
                        if (side == LabPopId.A)
                        {
                            atA[pair] = mbps;
                            retransmitsA += retransmits;
                        }
                        else
                        {
                            atB[pair] = mbps;
                            retransmitsB += retransmits;
                        }

                        if (flow.Ended)
                        {
                            throw new InvalidOperationException($"the {direction} transfer ended in pair {pair + 1} (route at {side})");
                        }
                    }

                    // A slice that moved nothing (a stall of the lab, either side) has no ratio: it is left out, and counted.
                    ratios[pair] = atA[pair] > 0 && atB[pair] > 0 ? atB[pair] / atA[pair] : double.NaN;
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"pair {pair + 1,4} {direction.ToString().ToLowerInvariant(),-8} route at A {atA[pair],7:0} Mbit/s  route at B ({viaB}) {atB[pair],7:0} Mbit/s  ratio {ratios[pair]:0.000}"));
                }

                lab.FlipTo(LabPopId.A);
                long viaBCount = lab.Pop(LabPopId.B).Namespace.Counter(forwarded) - forwardedBefore;
                long decapsulatedByA = 0;
                if (rescue is not null)
                {
                    // The agents write their status every second: wait for one written after the last slice.
                    await Task.Delay(TimeSpan.FromSeconds(1.5));
                    viaBCount = rescue.Counters(LabPopId.B).GetValueOrDefault("program.tunnelled") - tunnelledBefore;
                    decapsulatedByA = rescue.Counters(LabPopId.A).GetValueOrDefault("program.decapsulated") - decapsulatedBefore;
                }

                if (viaBCount == 0)
                {
                    throw new InvalidOperationException($"the route was at B for {pairs} slices, but B {viaB} nothing");
                }

                double[] rated = [.. ratios.Where(r => !double.IsNaN(r))];
                if (rated.Length == 0)
                {
                    throw new InvalidOperationException($"no pair of the {direction} moved data on both sides");
                }

                (double q1, double median, double q3) = Quartiles(rated);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"# {direction.ToString().ToLowerInvariant()}, route at B ({viaB}) / route at A, {rated.Length} of {pairs} pairs of slices rated: ratio median {median:0.000} (IQR {q1:0.000}-{q3:0.000}; {rated.Min():0.000}-{rated.Max():0.000}); {Median(atB):0} vs {Median(atA):0} Mbit/s; sender retransmissions {retransmitsB} vs {retransmitsA}; packets {viaB} by B {viaBCount}, decapsulated by A {decapsulatedByA}"));
            }
            finally
            {
                lab.FlipTo(LabPopId.A);
            }
        }
    }

    /// <summary>
    /// One bulk connection from the lab's client to the server in POP A, moving data in one direction until disposed
    /// or <c>stop</c> (the caller's hard bound) ends it.
    /// </summary>
    private sealed class BulkFlow(Socket client, Transfer serverSide, Task clientLoop, Transfer receiver) : IAsyncDisposable
    {
        /// <summary>The receiving end: the server's for an upload, the client's for a download.</summary>
        public Transfer Receiver => receiver;

        /// <summary>Either end stopped moving data: the connection failed.</summary>
        public bool Ended => clientLoop.IsCompleted || serverSide.Loop.IsCompleted;

        public static async Task<BulkFlow> OpenAsync(LabNamespace clientNamespace, Server server, IPEndPoint target, Direction direction, CancellationToken stop)
        {
            Socket client = clientNamespace.Run(() => new Socket(target.AddressFamily, SocketType.Stream, ProtocolType.Tcp));
            try
            {
                await client.ConnectAsync(target, stop).AsTask().WaitAsync(TimeSpan.FromSeconds(5), stop);
                await client.SendAsync(new[] { direction == Direction.Upload ? (byte)'U' : (byte)'D' }, SocketFlags.None, stop);
                Transfer serverSide = await server.NextAsync(TimeSpan.FromSeconds(5));
                var clientReceived = new Transfer { Socket = client };
                Task clientLoop = direction == Direction.Upload ? Transfer.SendAsync(client, stop) : clientReceived.ReceiveAsync(client, stop);
                return new BulkFlow(client, serverSide, clientLoop, direction == Direction.Upload ? serverSide : clientReceived);
            }
            catch
            {
                client.Dispose();
                throw;
            }
        }

        /// <summary>Closes both ends; each loop ends at its socket's first error after that.</summary>
        public async ValueTask DisposeAsync()
        {
            client.Dispose();
            serverSide.Socket.Dispose();
            await Task.WhenAll(clientLoop, serverSide.Loop).WaitAsync(TimeSpan.FromSeconds(10));
        }
    }

    /// <summary>One direction of one connection: the bytes received so far, and the loop that moves them.</summary>
    private sealed class Transfer
    {
        private long _bytes;

        public Socket Socket { get; init; } = null!;

        public Task Loop { get; set; } = Task.CompletedTask;

        public long Bytes => Interlocked.Read(ref _bytes);

        /// <summary>Sends until the connection or <paramref name="stop"/> ends it.</summary>
        public static async Task SendAsync(Socket socket, CancellationToken stop)
        {
            byte[] buffer = new byte[Chunk];
            Random.Shared.NextBytes(buffer);
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    await socket.SendAsync(buffer, SocketFlags.None, stop);
                }
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException or OperationCanceledException)
            {
                // The measurement is over: the other side or this one closed the connection.
            }
        }

        /// <summary>Receives and counts until the connection or <paramref name="stop"/> ends it.</summary>
        public async Task ReceiveAsync(Socket socket, CancellationToken stop)
        {
            byte[] buffer = new byte[2 * Chunk];
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    int n = await socket.ReceiveAsync(buffer, SocketFlags.None, stop);
                    if (n == 0)
                    {
                        return;
                    }

                    Interlocked.Add(ref _bytes, n);
                }
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException or OperationCanceledException)
            {
                // As above.
            }
        }
    }

    /// <summary>
    /// The server in POP A: each connection's first byte says what it wants, 'U' (the server receives and counts) or
    /// 'D' (the server sends until the client goes). Connections are handed to the measurement one at a time.
    /// </summary>
    private sealed class Server : IAsyncDisposable
    {
        private readonly Socket _listener;
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _accepting;
        private readonly System.Threading.Channels.Channel<Transfer> _accepted = System.Threading.Channels.Channel.CreateUnbounded<Transfer>();

        private Server(Socket listener)
        {
            _listener = listener;
            _accepting = AcceptAsync();
        }

        public static Server Start(LabNamespace ns, IPEndPoint endpoint) => new(ns.Run(() =>
        {
            var listener = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            listener.Bind(endpoint);
            listener.Listen();
            return listener;
        }));

        public async Task<Transfer> NextAsync(TimeSpan timeout) => await _accepted.Reader.ReadAsync().AsTask().WaitAsync(timeout);

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _listener.Dispose();
            await _accepting.WaitAsync(TimeSpan.FromSeconds(10)).ContinueWith(_ => { }, TaskScheduler.Default);
            _stop.Dispose();
        }

        private async Task AcceptAsync()
        {
            while (!_stop.IsCancellationRequested)
            {
                Socket socket;
                try
                {
                    socket = await _listener.AcceptAsync(_stop.Token);
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException or OperationCanceledException)
                {
                    return;
                }

                byte[] mode = new byte[1];
                var transfer = new Transfer { Socket = socket };
                using var first = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
                first.CancelAfter(TimeSpan.FromSeconds(5));
                try
                {
                    if (await socket.ReceiveAsync(mode, SocketFlags.None, first.Token) != 1)
                    {
                        socket.Dispose();
                        continue;
                    }
                }
                catch (Exception ex) when (ex is SocketException or OperationCanceledException)
                {
                    socket.Dispose();
                    continue;
                }

                // Each loop ends when the measurement closes its end of the connection (or the server stops).
                transfer.Loop = mode[0] == (byte)'U' ? transfer.ReceiveAsync(socket, _stop.Token) : Transfer.SendAsync(socket, _stop.Token);
                await _accepted.Writer.WriteAsync(transfer, _stop.Token);
            }
        }
    }
}
