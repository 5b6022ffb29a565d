using System.Globalization;
using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Lab;
using MptcpAnycast.Rescue;
using MptcpAnycast.Rescue.Bpf;
using MptcpAnycast.Tests.Common;

namespace MptcpAnycast.Benchmarks;

/// <summary>
/// <c>rescue-decision [--rounds N] [--repeat R] [--single K]</c>: what the rescue program's ingress decision costs per
/// packet, timed by the kernel itself (<c>BPF_PROG_TEST_RUN</c>'s <c>duration</c>) on the frames the program's tests use,
/// in a throw-away namespace of its own (127.0.0.1 and ::1 stand in for the anycast addresses, as in the tests, so a
/// real loopback connection there is a "local established socket").
/// <para>
/// Two ways of timing, because the kernel runs a repeated test on the same buffer without restoring it:
/// <list type="bullet">
/// <item>Cases that leave the frame as it was (pass or drop) run R times in one call (in-kernel loop, hot caches); the
/// duration is the mean per run.</item>
/// <item>Cases that rewrite the frame (tunnel: an outer header is pushed; decapsulation: one is pulled) would see their
/// own output on the second run (and take another path: a foreign tunnel, a miss), so they run once per call, K calls;
/// the per-call durations' median includes a fixed cost of the test harness (two clock reads, bottom halves off and on)
/// that the single-run figure of the "not anycast" case, less its R-run figure, measures; it is subtracted. The same
/// is done for the hot cases, which shows how far the single-run estimate is from the loop's figure.</item>
/// </list>
/// "Tunnel decided" is the tunnelled path up to the outer header, hot: a flow whose owner is of the other family, which
/// the program decides to tunnel and then drops unchanged (it offers neither 6-in-4 nor 4-in-6).
/// A miss is reported to userspace through the ring buffer (at most MissReportsPerWindow per CPU per window); the
/// "miss" case has the bound at 0 (every report suppressed: the cost under a flood), "miss, reported" runs with a large
/// bound and a reader draining the ring, as the agent does, once per call.
/// Every sample checks its verdict and that the counter of the expected path grew by exactly the number of runs.
/// Cases run in alternating order, round by round; the table shows medians and ranges over the rounds. Each round also
/// times one call into the kernel (<see cref="HelperCallProbe"/>), the unit the socket lookup's cost is made of.
/// </para>
/// </summary>
internal static class RescueDecision
{
    private const int TcActPass = -1, TcActShot = 2, TcActRedirect = 7;
    private const int Payload4 = 1400, Payload6 = 1380;

    private static readonly IPAddress Client4 = IPAddress.Parse("203.0.113.7");
    private static readonly IPAddress Client6 = IPAddress.Parse("2001:db8:c::7");
    private static readonly IPAddress Local4 = IPAddress.Parse("198.51.100.2");
    private static readonly IPAddress Local6 = IPAddress.Parse("2001:db8:b::2");
    private static readonly IPAddress Owner4 = IPAddress.Parse("198.51.100.1");
    private static readonly IPAddress Owner6 = IPAddress.Parse("2001:db8:a::1");

    /// <summary>
    /// One kind of packet: its frame, the verdict and counter it must produce, and whether a run rewrites it. Quiet: run
    /// on a second program whose owner map is empty (a POP that rescues nothing, which does not read the owner hint);
    /// the others run on one with owner entries (a POP while it rescues).
    /// </summary>
    private sealed record Case(string Name, byte[] Frame, int Verdict, int Counter, bool Rewrites, bool Reported = false, bool Egress = false, bool Quiet = false)
    {
        public List<double> Hot { get; } = [];
        public List<double> Single { get; } = [];
    }

    public static int Run(string[] args)
    {
        int rounds = 7, repeat = 1_000_000, single = 20_000;
        for (int i = 0; i < args.Length; i++)
        {
            string value = i + 1 < args.Length ? args[i + 1] : throw new UsageException($"rescue-decision: {args[i]} needs a value");
            switch (args[i])
            {
                case "--rounds":
                    rounds = Arguments.Int("rescue-decision", args[i], value, 1, 100);
                    break;
                case "--repeat":
                    repeat = Arguments.Int("rescue-decision", args[i], value, 1, 10_000_000);
                    break;
                case "--single":
                    single = Arguments.Int("rescue-decision", args[i], value, 100, 1_000_000);
                    break;
                default:
                    throw new UsageException($"rescue-decision takes --rounds N, --repeat R, --single K; got '{args[i]}'");
            }

            i++;
        }

        if (Environment.UserName != "root")
        {
            Console.Error.WriteLine("rescue-decision needs root (it loads a BPF program in a namespace of its own)");
            return 1;
        }

        // A namespace of its own: the loopback connection and the program's socket lookups stay in it.
        string name = LabPrefix.New("mprd") + "-dec";
        using LabNamespace ns = LabNamespace.Create(name);
        using NetworkNamespace handle = NetworkNamespace.Open(name);
        // Socket lookups in a test run see the namespace of the calling thread: everything runs on one thread inside.
        return handle.Run(() => Measure(rounds, repeat, single));
    }

    private static int Measure(int rounds, int repeat, int single)
    {
        using RescueDataplane dataplane = RescueDataplane.Load();
        var suppressed = new RescueDataplaneConfig { LocalIPv4 = Local4, LocalIPv6 = Local6, MssIPv4 = 1440, MssIPv6 = 1400, MissReportsPerWindow = 0 };
        var reporting = suppressed with { MissReportsPerWindow = 1_000_000 };
        dataplane.Configure(suppressed, enabled: true);
        dataplane.SetAnycast([IPAddress.Loopback, IPAddress.IPv6Loopback]);
        dataplane.SetPeers([Owner4, Owner6]);
        using RescueDataplane quiet = RescueDataplane.Load();
        quiet.Configure(suppressed, enabled: true);
        quiet.SetAnycast([IPAddress.Loopback, IPAddress.IPv6Loopback]);
        quiet.SetPeers([Owner4, Owner6]);

        using var pair4 = LocalConnection.Open(IPAddress.Loopback);
        using var pair6 = LocalConnection.Open(IPAddress.IPv6Loopback);
        // A local connection whose owner hint bit is set (a flow on its tuple had an owner once; a colliding flow has
        // the same effect): the program reads the owner map, misses, then looks up the socket.
        using var stale4 = LocalConnection.Open(IPAddress.Loopback);
        dataplane.SetOwner(stale4.Flow, Owner4);
        dataplane.RemoveOwner(stale4.Flow);
        dataplane.SetOwner(new TcpFlow(Client4, 40005, IPAddress.Loopback, 443), Owner4);
        dataplane.SetOwner(new TcpFlow(Client6, 40005, IPAddress.IPv6Loopback, 443), Owner6);
        // Owners of the other family: the program decides to tunnel, then cannot (6-in-4 and 4-in-6 are not offered)
        // and drops the frame unchanged, so the decision itself can run hot.
        dataplane.SetOwner(new TcpFlow(Client4, 40009, IPAddress.Loopback, 443), Owner6);
        dataplane.SetOwner(new TcpFlow(Client6, 40009, IPAddress.IPv6Loopback, 443), Owner4);

        if (!dataplane.Hint.Active || quiet.Hint.Active)
        {
            throw new InvalidOperationException("the rescuing program must read its owner hint and the quiet one must not");
        }

        const int ack = TestPackets.Ack;
        Case notAnycast = new("not anycast", TestPackets.Tcp(Client4, 40000, IPAddress.Parse("192.0.2.9"), 80, ack, payload: Payload4), TcActPass, 0, false);
        Case floor = new("not IP (ARP): entry and exit", Arp(), TcActPass, -1, false);
        Case[] cases =
        [
            floor,
            notAnycast,
            new("SYN, local (IPv4)", TestPackets.Tcp(Client4, 40001, IPAddress.Loopback, 443, TestPackets.Syn, payload: 0, options: [2, 4, 0x05, 0xb4]), TcActPass, 1, false),
            new("established socket (IPv4)", pair4.Segment(Payload4), TcActPass, 2, false),
            new("established socket (IPv6)", pair6.Segment(Payload6), TcActPass, 2, false),
            new("SYN, local (IPv4), quiet", TestPackets.Tcp(Client4, 40001, IPAddress.Loopback, 443, TestPackets.Syn, payload: 0, options: [2, 4, 0x05, 0xb4]), TcActPass, 1, false, Quiet: true),
            new("established (IPv4), quiet", pair4.Segment(Payload4), TcActPass, 2, false, Quiet: true),
            new("established (IPv6), quiet", pair6.Segment(Payload6), TcActPass, 2, false, Quiet: true),
            new("established, hint bit set (IPv4)", stale4.Segment(Payload4), TcActPass, 2, false),
            new("tunnelled (IPv4 in IPv4)", TestPackets.Tcp(Client4, 40005, IPAddress.Loopback, 443, ack, payload: Payload4), TcActRedirect, 4, true),
            new("tunnelled (IPv6 in IPv6)", TestPackets.Tcp(Client6, 40005, IPAddress.IPv6Loopback, 443, ack, payload: Payload6), TcActRedirect, 4, true),
            new("tunnel decided (IPv4), no header", TestPackets.Tcp(Client4, 40009, IPAddress.Loopback, 443, ack, payload: Payload4), TcActShot, 4, false),
            new("tunnel decided (IPv6), no header", TestPackets.Tcp(Client6, 40009, IPAddress.IPv6Loopback, 443, ack, payload: Payload6), TcActShot, 4, false),
            new("decapsulated (IPv4)", Encapsulated(Owner4, Local4, TestPackets.Tcp(Client4, 40006, IPAddress.Loopback, 443, ack, payload: Payload4)), TcActPass, 5, true),
            new("decapsulated (IPv6)", Encapsulated(Owner6, Local6, TestPackets.Tcp(Client6, 40006, IPAddress.IPv6Loopback, 443, ack, payload: Payload6)), TcActPass, 5, true),
            new("miss, report suppressed (IPv4)", TestPackets.Tcp(Client4, 40007, IPAddress.Loopback, 443, ack, payload: Payload4), TcActShot, 7, false),
            new("miss, reported (IPv4)", TestPackets.Tcp(Client4, 40008, IPAddress.Loopback, 443, ack, payload: Payload4), TcActShot, 6, true, Reported: true),
            // The egress program sees every segment the server sends; it changes only SYN-ACKs above the MSS budget.
            new("egress: data from anycast", TestPackets.Tcp(IPAddress.Loopback, 443, Client4, 40010, ack, payload: Payload4), TcActPass, -1, false, Egress: true),
            new("egress: SYN-ACK within budget", TestPackets.Tcp(IPAddress.Loopback, 443, Client4, 40010, TestPackets.Syn | ack, payload: 0, options: [2, 4, 0x05, 0x78]), TcActPass, -1, false, Egress: true),
        ];

        long reports = 0;
        using var reader = new MissReader(dataplane, _ => Interlocked.Increment(ref reports));
        using HelperCallProbe probe = HelperCallProbe.Load();
        var callCosts = new List<double>();
        var overhead = new List<double>();
        byte[] output = new byte[2048];
        for (int round = 1; round <= rounds; round++)
        {
            IEnumerable<Case> order = round % 2 == 1 ? cases : cases.Reverse();
            foreach (Case c in order)
            {
                RescueDataplane program = c.Quiet ? quiet : dataplane;
                if (c.Reported)
                {
                    dataplane.Configure(reporting, enabled: true);
                    c.Single.Add(SingleRuns(dataplane, c, single, output, () => Interlocked.Read(ref reports)));
                    dataplane.Configure(suppressed, enabled: true);
                    continue;
                }

                if (!c.Rewrites)
                {
                    c.Hot.Add(HotRun(program, c, repeat, output));
                }

                c.Single.Add(SingleRuns(program, c, single, output, null));
            }

            callCosts.Add(probe.MeasureCall(floor.Frame, repeat));
            // The harness's own cost per call: what one run of the cheapest path costs beyond the loop's figure.
            overhead.Add(notAnycast.Single[^1] - notAnycast.Hot[^1]);
        }

        double fixedCost = Median(overhead);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"# rescue decision, BPF_PROG_TEST_RUN (ingress unless named egress), {rounds} rounds alternating the cases; hot: {repeat:N0} runs per call; single: median of {single:N0} calls of one run, less the fixed cost per call ({fixedCost:0.0} ns, range {overhead.Min():0.0}-{overhead.Max():0.0}); Linux {Environment.OSVersion.Version}, {Environment.ProcessorCount} CPUs"));
        // "above floor": the hot figure less the ARP case's of the same round, i.e. without the test loop's own cost per
        // run and the program's entry (configuration lookup), which every packet on the uplink pays.
        Console.WriteLine($"{"case",-32} {"counter",-16} {"hot ns/run: median (min-max)",30} {"above floor",20} {"single ns/run: median (min-max)",32}");
        foreach (Case c in cases)
        {
            string hot = c.Hot.Count == 0 ? "-" : Range(c.Hot);
            string above = c.Hot.Count == 0 ? "-" : Range([.. c.Hot.Select((h, i) => h - floor.Hot[i])]);
            string one = Range([.. c.Single.Select(s => s - fixedCost)]);
            Console.WriteLine($"{c.Name,-32} {(c.Counter < 0 ? "-" : RescueDataplaneCounters.Names[c.Counter]),-16} {hot,30} {above,20} {one,32}");
        }

        Console.WriteLine($"# one call from a program to a helper that does almost nothing (bpf_get_prandom_u32), hot, per call of {HelperCallProbe.Calls} in a row: {Range(callCosts)} ns");

        return 0;
    }

    /// <summary>One call of <paramref name="repeat"/> runs on the same frame: the kernel's mean per run.</summary>
    private static double HotRun(RescueDataplane dataplane, Case c, int repeat, byte[] output)
    {
        ulong before = Count(dataplane, c);
        int verdict = dataplane.TestRun(ingress: !c.Egress, c.Frame, output, out _, repeat, out uint nanoseconds);
        Check(c, verdict, Count(dataplane, c) - before, (ulong)repeat);
        return nanoseconds;
    }

    /// <summary><paramref name="calls"/> calls of one run each: the median of the kernel's duration per call.</summary>
    private static double SingleRuns(RescueDataplane dataplane, Case c, int calls, byte[] output, Func<long>? reports)
    {
        var durations = new uint[calls];
        ulong before = Count(dataplane, c);
        long reportsBefore = reports?.Invoke() ?? 0;
        // Reported misses go through a 1 MiB ring (about 600 reports): in batches the reader can drain, waiting for it
        // between batches (bounded) so that no report finds the ring full and takes the cheaper "unreported" path.
        int batch = reports is null ? calls : 200;
        for (int done = 0; done < calls;)
        {
            int end = Math.Min(calls, done + batch);
            for (; done < end; done++)
            {
                int verdict = dataplane.TestRun(ingress: !c.Egress, c.Frame, output, out int length, 1, out durations[done]);
                if (verdict != c.Verdict)
                {
                    throw new InvalidOperationException($"{c.Name}: verdict {verdict}, expected {c.Verdict}");
                }

                if (done == 0 && c.Verdict == TcActRedirect && length != c.Frame.Length + (c.Frame[12] == 0x86 ? 40 : 20))
                {
                    throw new InvalidOperationException($"{c.Name}: the tunnelled frame is {length} bytes, the input {c.Frame.Length}");
                }
            }

            for (int wait = 0; reports is not null && reports() - reportsBefore < done && wait < 500; wait++)
            {
                Thread.Sleep(2);
            }
        }

        Check(c, c.Verdict, Count(dataplane, c) - before, (ulong)calls);
        if (reports is not null && reports() - reportsBefore != calls)
        {
            throw new InvalidOperationException($"{c.Name}: {reports() - reportsBefore} of {calls} misses reached the reader");
        }

        Array.Sort(durations);
        return durations[calls / 2];
    }

    /// <summary>The counter of the path <paramref name="c"/> must take (0 for the one case that counts nothing).</summary>
    private static ulong Count(RescueDataplane dataplane, Case c) => c.Counter < 0 ? 0 : dataplane.ReadCounters()[c.Counter];

    private static void Check(Case c, int verdict, ulong counted, ulong expected)
    {
        if (verdict != c.Verdict || (c.Counter >= 0 && counted != expected))
        {
            throw new InvalidOperationException(
                $"{c.Name}: verdict {verdict} (expected {c.Verdict}), counter {RescueDataplaneCounters.Names[c.Counter]} grew by {counted} (expected {expected})");
        }
    }

    /// <summary>An ARP request: not IP, so the program returns after reading its configuration (the floor of every case).</summary>
    private static byte[] Arp()
    {
        byte[] arp = new byte[28];
        arp[1] = 1; // Ethernet
        arp[2] = 0x08; // IPv4
        arp[4] = 6;
        arp[5] = 4;
        arp[7] = 1; // request
        byte[] frame = TestPackets.Ethernet(arp, ipv6: false);
        frame[12] = 0x08;
        frame[13] = 0x06;
        return frame;
    }

    /// <summary>The IP packet of <paramref name="innerFrame"/> in an outer header from a peer to this POP, as a peer's program sends it.</summary>
    private static byte[] Encapsulated(IPAddress peer, IPAddress local, byte[] innerFrame)
    {
        bool ipv6 = peer.AddressFamily == AddressFamily.InterNetworkV6;
        return TestPackets.Ip(peer, local, ipv6 ? (byte)41 : (byte)4, innerFrame[TestPackets.EthernetLength..]);
    }

    private static string Range(IReadOnlyList<double> values) =>
        string.Create(CultureInfo.InvariantCulture, $"{Median(values):0.0} ({values.Min():0.0}-{values.Max():0.0})");

    private static double Median(IReadOnlyList<double> values)
    {
        double[] sorted = [.. values.Order()];
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }


    /// <summary>A plain TCP connection over loopback in the calling thread's namespace: its segments are "local".</summary>
    private sealed class LocalConnection : IDisposable
    {
        private readonly Socket _listener, _client, _server;

        private LocalConnection(Socket listener, Socket client, Socket server)
        {
            _listener = listener;
            _client = client;
            _server = server;
        }

        public static LocalConnection Open(IPAddress loopback)
        {
            var listener = new Socket(loopback.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            listener.Bind(new IPEndPoint(loopback, 0));
            listener.Listen();
            var client = new Socket(loopback.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            client.Connect(listener.LocalEndPoint!);
            return new LocalConnection(listener, client, listener.Accept());
        }

        /// <summary>The connection client to server, as the owner map would key it.</summary>
        public TcpFlow Flow
        {
            get
            {
                var client = (IPEndPoint)_client.LocalEndPoint!;
                var server = (IPEndPoint)_server.LocalEndPoint!;
                return new TcpFlow(client.Address, client.Port, server.Address, server.Port);
            }
        }

        /// <summary>An ACK with data from the client to the server of this connection.</summary>
        public byte[] Segment(int payload)
        {
            TcpFlow flow = Flow;
            return TestPackets.Tcp(flow.ClientAddress, flow.ClientPort, flow.ServerAddress, flow.ServerPort, TestPackets.Ack, payload: payload);
        }

        public void Dispose()
        {
            _server.Dispose();
            _client.Dispose();
            _listener.Dispose();
        }
    }
}
