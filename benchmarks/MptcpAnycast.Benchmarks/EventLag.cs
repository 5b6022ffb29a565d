using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using MptcpAnycast.Kestrel;
using MptcpAnycast.Kestrel.Connections;
using MptcpAnycast.Kestrel.Control;
using MptcpAnycast.Kestrel.Diagnostics;
using MptcpAnycast.Lab;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Benchmarks;

/// <summary>
/// <c>event-lag [--rate R] [--concurrent C] [--seconds S] [--client-nice N]</c>: how far the transport's event processing trails the kernel
/// while MPTCP connections arrive at R per second and C of them stay open, each announced (a real ANNOUNCE to the
/// userspace path manager) and joined by the client (a real MP_JOIN), in the anycast lab's namespaces.
/// <para>
/// The lag is timed on the kernel's own events through the transport's real event path (netlink socket, decoder, the
/// handlers on the client's event thread, among them the control path's join tracker): the server closes its oldest
/// connection once C are open, noting the time just before <c>close()</c>, and the kernel emits that connection's CLOSED
/// event inside <c>close()</c>. The event thread hands each event to its handlers in kernel order, one at a time, so the
/// moment the harness's handler gets the CLOSED event is the moment the join tracker would have; the lag is the
/// difference. The transport itself does not subscribe to CLOSED: the harness adds a handler for it on the transport's
/// own client, so the event thread carries one event per connection more than in production. Each sample is the
/// queueing delay of every event at that moment, joins included.
/// </para>
/// </summary>
internal static class EventLag
{
    private const int Port = 9000;

    public static async Task<int> RunAsync(string[] args)
    {
        int rate = 5000, concurrent = 10_000, clientNice = 0;
        double seconds = 6;
        for (int i = 0; i < args.Length; i++)
        {
            string value = i + 1 < args.Length ? args[i + 1] : throw new UsageException($"event-lag: {args[i]} needs a value");
            switch (args[i])
            {
                case "--rate":
                    rate = Arguments.Int("event-lag", args[i], value, 1, 50_000);
                    break;
                case "--concurrent":
                    concurrent = Arguments.Int("event-lag", args[i], value, 1, 30_000);
                    break;
                case "--seconds":
                    seconds = Arguments.Int("event-lag", args[i], value, 1, 60);
                    break;
                case "--client-nice":
                    clientNice = Arguments.Int("event-lag", args[i], value, 0, 19);
                    break;
                default:
                    throw new UsageException($"event-lag takes --rate R, --concurrent C, --seconds S, --client-nice N; got '{args[i]}'");
            }

            i++;
        }

        if (Environment.UserName != "root")
        {
            Console.Error.WriteLine("event-lag needs root (it builds the anycast lab in network namespaces)");
            return 1;
        }

        LabTopology lab = LabTopology.Up(new LabOptions
        {
            Prefix = $"evlag{Environment.ProcessId}",
            PathManager = LabPathManager.Userspace,
            Client = LabClientLimits.AcceptAddAddr,
        });
        try
        {
            LabPop pop = lab.Pop(LabPopId.A);
            lab.Client.Sysctl("net.ipv4.ip_local_port_range", "10000 65000");
            var anycast = IPAddress.Parse(lab.Plan.Anycast4);
            var unicast = IPAddress.Parse(pop.Address4);
            await using var run = pop.Namespace.Run(() => Server.Start(anycast, unicast));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"# event lag: {rate} new MPTCP connections/s, up to {concurrent} open, {seconds} s; each announced (Userspace) and joined; anycast lab, Linux {Environment.OSVersion.Version}; client process at nice {clientNice}"));
            run.ClientNice = clientNice;

            // Idle first: the fixed cost of the pipeline, without load.
            await run.LoadAsync(lab.Client, pop.Namespace, new IPEndPoint(anycast, Port), rate: 100, concurrent: 50, seconds: 2, "idle (100/s, 50 open)");
            // Then the load twice: the first time the process reaches C open connections its tables grow (the
            // announcer's by-token map, this harness's queue of open sockets: large arrays, which count towards the
            // runtime's large-object budget); the second time they have their size, as in a server that has been up
            // for a while.
            await run.LoadAsync(lab.Client, pop.Namespace, new IPEndPoint(anycast, Port), rate, concurrent, seconds, string.Create(CultureInfo.InvariantCulture, $"load, first ({rate}/s, {concurrent} open)"));
            await run.LoadAsync(lab.Client, pop.Namespace, new IPEndPoint(anycast, Port), rate, concurrent, seconds, string.Create(CultureInfo.InvariantCulture, $"load, steady ({rate}/s, {concurrent} open)"));
            return 0;
        }
        finally
        {
            lab.Down();
        }
    }

    /// <summary>
    /// <c>event-lag-client TARGET RATE SECONDS</c>, started by <see cref="RunAsync"/> in the client namespace (its own
    /// process: one process may not hold both ends of 10,000 connections here): opens MPTCP connections to TARGET at RATE
    /// per second for SECONDS, holds each until the server closes it, then prints what it did.
    /// </summary>
    public static async Task<int> RunClientAsync(string[] args)
    {
        if (args.Length != 3 || !IPEndPoint.TryParse(args[0], out IPEndPoint? target))
        {
            throw new UsageException($"event-lag-client takes TARGET RATE SECONDS, got '{string.Join(' ', args)}'");
        }

        int rate = Arguments.Int("event-lag", "RATE", args[1], 1, 50_000);
        double seconds = Arguments.Int("event-lag", "SECONDS", args[2], 1, 60);
        int failed = 0;
        long started = 0;
        var connections = new List<Task>();
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed.TotalSeconds < seconds)
        {
            for (long due = (long)(clock.Elapsed.TotalSeconds * rate); started < due; started++)
            {
                connections.Add(HoldAsync(target, () => Interlocked.Increment(ref failed)));
            }

            await Task.Delay(1);
        }

        double elapsed = clock.Elapsed.TotalSeconds;
        bool drained = await Task.WhenAll(connections).WaitAsync(TimeSpan.FromSeconds(30)).ContinueWith(t => t.IsCompletedSuccessfully, TaskScheduler.Default);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{started} connections in {elapsed:0.0} s ({started / elapsed:0}/s), {failed} failed{(drained ? "" : ", some never closed by the server")}"));
        return 0;
    }

    private static async Task HoldAsync(IPEndPoint target, Action failed)
    {
        using Socket socket = MptcpSocket.Create(target.AddressFamily);
        try
        {
            await socket.ConnectAsync(target);
            byte[] one = new byte[1];
            while (await socket.ReceiveAsync(one, SocketFlags.None) > 0)
            {
            }
        }
        catch (SocketException)
        {
            failed();
        }
    }


    /// <summary>The server side: a listener and the transport's control path on the real path manager, in the POP's namespace.</summary>
    private sealed class Server : IAsyncDisposable
    {
        private readonly Socket _listener;
        private readonly ClosedEventTimer _pathManager;
        private readonly ControlPath _control;
        private readonly ConcurrentQueue<(Socket Socket, TrackedConnection Connection)> _open = new();
        private readonly int[] _statesAtClose = new int[Enum.GetValues<UnicastSubflowState>().Length];
        private readonly List<double> _queued = new(40_000); // accept to ANNOUNCE: how long a connection waited for the control loop
        private readonly List<double> _queuedNotJoined = new(40_000);
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _acceptLoop;
        private readonly GcWatcher _gc = new();

        /// <summary>The nice value the client process runs at (0: the same priority as this process).</summary>
        public int ClientNice { get; set; }

        private Server(Socket listener, ClosedEventTimer pathManager, ControlPath control)
        {
            _listener = listener;
            _pathManager = pathManager;
            _control = control;
            _acceptLoop = Task.Run(AcceptAsync);
        }

        /// <summary>Runs on a thread inside the POP's namespace: every socket is created there.</summary>
        public static Server Start(IPAddress anycast, IPAddress unicast)
        {
            Socket listener = MptcpSocket.CreateListener(new IPEndPoint(IPAddress.Any, Port), backlog: 4096);
            var options = new MptcpAnycastOptions
            {
                Mode = AnnouncementMode.Userspace,
                AnycastAddresses = [anycast.ToString()],
                UnicastAddresses = [unicast.ToString()],
            };
            MptcpAnycastSettings settings = MptcpAnycastSettings.Validate(options, [anycast, unicast]);
            // On this thread: the netlink sockets are made in the POP's namespace.
            NetlinkPathManager kernel = NetlinkPathManager.Open(new PathManagerClientOptions
            {
                CommandTimeout = ControlPathTuning.Default.CommandTimeout,
                EventReceiveBufferSize = settings.EventSocketReceiveBufferSize,
            });
            var timer = new ClosedEventTimer();
            kernel.Client.AddEventHandler(timer, [PathManagerEventType.Closed]);
            IMeterFactory meters = new ServiceCollection().AddMetrics().BuildServiceProvider().GetRequiredService<IMeterFactory>();
            var control = new ControlPath(settings, AnnouncementMode.Userspace, kernel, null, NullLogger.Instance, new MptcpAnycastMetrics(meters), TimeProvider.System);
            control.Start();
            if (!control.IsFollowingEvents)
            {
                throw new InvalidOperationException("cannot follow path-manager events");
            }

            return new Server(listener, timer, control);
        }

        private async Task AcceptAsync()
        {
            long n = 0;
            while (!_stop.IsCancellationRequested)
            {
                Socket socket;
                try
                {
                    socket = await _listener.AcceptAsync(_stop.Token);
                }
                catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
                {
                    if (_stop.IsCancellationRequested)
                    {
                        return;
                    }

                    continue;
                }

                // As the transport's listener does: the socket's facts, then the control path takes over.
                var connection = new TrackedConnection(socket, MptcpSocket.GetConnectionInfo(socket), string.Create(CultureInfo.InvariantCulture, $"c{++n}"),
                    socket.LocalEndPoint as IPEndPoint, socket.RemoteEndPoint as IPEndPoint, DateTimeOffset.UtcNow);
                _control.OnAccepted(connection);
                _open.Enqueue((socket, connection));
            }
        }

        /// <summary>Closes the oldest open connection, noting when; returns whether it had been joined.</summary>
        private bool CloseOldest(out bool joined)
        {
            joined = false;
            if (!_open.TryDequeue(out (Socket Socket, TrackedConnection Connection) oldest))
            {
                return false;
            }

            UnicastSubflowState state = oldest.Connection.State;
            joined = state == UnicastSubflowState.Joined;
            _statesAtClose[(int)state]++;
            if (oldest.Connection.AnnounceStartedAt is DateTimeOffset announced)
            {
                double wait = (announced - oldest.Connection.AcceptedAt).TotalMilliseconds;
                _queued.Add(wait);
                if (!joined)
                {
                    _queuedNotJoined.Add(wait);
                }
            }
            long before = Stopwatch.GetTimestamp();
            oldest.Socket.Dispose();
            if (oldest.Connection.Token != 0)
            {
                _pathManager.Closed(oldest.Connection.Token, before, Stopwatch.GetTimestamp());
            }

            _control.OnClosed(oldest.Connection);
            return true;
        }

        /// <summary>The kernel's counters that say where a join got lost: the server's and the client's.</summary>
        private static readonly string[] ServerCounters = ["MPTcpExtMPJoinSynRx", "MPTcpExtMPJoinAckRx", "MPTcpExtMPJoinRejected", "TcpExtListenOverflows"];
        private static readonly string[] ClientCounters = ["MPTcpExtAddAddrDrop"];

        private static long[] Read(LabNamespace ns, string[] counters) => [.. counters.Select(ns.Counter)];

        public async Task LoadAsync(LabNamespace clientNamespace, LabNamespace serverNamespace, IPEndPoint target, int rate, int concurrent, double seconds, string label)
        {
            long[] serverBefore = Read(serverNamespace, ServerCounters), clientBefore = Read(clientNamespace, ClientCounters);
            _pathManager.Reset(expected: (int)(rate * seconds * 1.2) + concurrent);
            _gc.Take();
            int closed = 0, joined = 0, maxOpen = 0;
            Array.Clear(_statesAtClose);
            _queued.Clear();
            _queuedNotJoined.Clear();
            TimeSpan gcPauseBefore = GC.GetTotalPauseDuration();
            int gcBefore = GC.CollectionCount(0), gen2Before = GC.CollectionCount(2);
            long allocatedBefore = GC.GetTotalAllocatedBytes();
            string[] clientArgs = [typeof(EventLag).Assembly.Location, "event-lag-client", target.ToString(),
                rate.ToString(CultureInfo.InvariantCulture), seconds.ToString(CultureInfo.InvariantCulture)];
            // The client shares this machine's cores; a positive nice value lets the server's threads go first, as when
            // the clients are elsewhere (the server's kernel still handles every packet and event).
            using ChildProcess client = clientNamespace.Start(ClientNice > 0
                ? ["nice", "-n", ClientNice.ToString(CultureInfo.InvariantCulture), "dotnet", .. clientArgs]
                : ["dotnet", .. clientArgs]);
            var clock = Stopwatch.StartNew();
            while (!client.HasExited && clock.Elapsed.TotalSeconds < seconds + 40)
            {
                maxOpen = Math.Max(maxOpen, _open.Count);
                int limit = clock.Elapsed.TotalSeconds < seconds + 5 ? concurrent : 0; // then let the client finish
                while (_open.Count > limit && CloseOldest(out bool wasJoined))
                {
                    closed++;
                    joined += wasJoined ? 1 : 0;
                }

                await Task.Delay(1);
            }

            if (!client.HasExited)
            {
                client.Kill();
            }

            await client.WaitForExitAsync(TimeSpan.FromSeconds(10)); // its output, read to the end

            while (CloseOldest(out bool wasJoined))
            {
                closed++;
                joined += wasJoined ? 1 : 0;
            }

            await Task.Delay(1000); // the last CLOSED events
            (List<double> lags, List<double> fromEnd, int unmatched, int lost) = _pathManager.Collect();
            Console.WriteLine($"{label}: client: {client.Output.Trim()}");
            long[] serverAfter = Read(serverNamespace, ServerCounters), clientAfter = Read(clientNamespace, ClientCounters);
            Console.WriteLine("  kernel: server " + string.Join(", ", ServerCounters.Select((c, i) => $"{c.Replace("MPTcpExt", "").Replace("TcpExt", "")} {serverAfter[i] - serverBefore[i]}"))
                + "; client " + string.Join(", ", ClientCounters.Select((c, i) => $"{c.Replace("MPTcpExt", "")} {clientAfter[i] - clientBefore[i]}")));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  server: at most {maxOpen} open; {joined} of {closed} joined before the server closed them ({100.0 * joined / Math.Max(1, closed):0.0}%); "
                + $"state at close: {string.Join(", ", Enum.GetValues<UnicastSubflowState>().Where(v => _statesAtClose[(int)v] > 0).Select(v => $"{v} {_statesAtClose[(int)v]}"))}"));
            Console.WriteLine($"  CLOSED event lag over {lags.Count} events, from close() entered: {Summary(lags)}; {unmatched} not seen, events-lost markers {lost}");
            Console.WriteLine($"  the same from close() returned: {Summary(fromEnd)}");
            Console.WriteLine($"  accept to ANNOUNCE (the wait for the control loop) over {_queued.Count} connections: {Summary(_queued)}");
            if (_queuedNotJoined.Count > 0)
            {
                Console.WriteLine($"  the same for the {_queuedNotJoined.Count} not joined: {Summary(_queuedNotJoined)}");
            }
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  this process's GC meanwhile: {GC.CollectionCount(0) - gcBefore} collections ({GC.CollectionCount(2) - gen2Before} full), paused {(GC.GetTotalPauseDuration() - gcPauseBefore).TotalMilliseconds:0} ms in all ({(System.Runtime.GCSettings.IsServerGC ? "server" : "workstation")} GC); "
                + $"{(GC.GetTotalAllocatedBytes() - allocatedBefore) / Math.Max(1, closed)} bytes allocated per connection"));
            foreach (string collection in _gc.Take())
            {
                Console.WriteLine($"    {collection}");
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _listener.Dispose();
            await _acceptLoop.ContinueWith(_ => { }, TaskScheduler.Default);
            while (_open.TryDequeue(out (Socket Socket, TrackedConnection Connection) c))
            {
                c.Socket.Dispose();
            }

            await _control.DisposeAsync();
            _stop.Dispose();
            _gc.Dispose();
        }
    }

    private static string Summary(List<double> values)
    {
        if (values.Count == 0)
        {
            return "-";
        }

        values.Sort();
        string At(double q) => values[Math.Min(values.Count - 1, (int)(q * values.Count))].ToString("0.000", CultureInfo.InvariantCulture);
        return $"median {At(0.5)} ms, p90 {At(0.9)} ms, p99 {At(0.99)} ms, max {values[^1].ToString("0.000", CultureInfo.InvariantCulture)} ms";
    }

    /// <summary>
    /// A handler on the transport's own path-manager client that notes when each CLOSED event reaches the event thread's
    /// handlers, compared with the time its connection was closed.
    /// </summary>
    private sealed class ClosedEventTimer : IPathManagerEventHandler
    {
        // Replaced, at their full size, before each phase: growing them during one would be this harness's garbage.
        private volatile ConcurrentDictionary<uint, (long Before, long After)> _closed = new();
        private volatile ConcurrentDictionary<uint, long> _handled = new();
        private int _lost;

        /// <summary>The connection was closed: <c>close()</c> was entered at <paramref name="before"/> and returned at <paramref name="after"/>.</summary>
        public void Closed(uint token, long before, long after) => _closed[token] = (before, after);

        /// <summary>Starts a phase of about <paramref name="expected"/> connections.</summary>
        public void Reset(int expected)
        {
            _closed = new ConcurrentDictionary<uint, (long Before, long After)>(Environment.ProcessorCount, expected);
            _handled = new ConcurrentDictionary<uint, long>(Environment.ProcessorCount, expected);
            Interlocked.Exchange(ref _lost, 0);
        }

        /// <summary>
        /// Per event, from the start of <c>close()</c> (an upper bound: it includes the close itself) and from its
        /// return (a lower bound, 0 when the event was handled before <c>close()</c> returned).
        /// </summary>
        public (List<double> FromCloseStart, List<double> FromCloseEnd, int Unmatched, int Lost) Collect()
        {
            var fromStart = new List<double>();
            var fromEnd = new List<double>();
            foreach ((uint token, (long before, long after)) in _closed)
            {
                if (_handled.TryGetValue(token, out long handled))
                {
                    fromStart.Add(Stopwatch.GetElapsedTime(before, handled).TotalMilliseconds);
                    fromEnd.Add(Math.Max(0, Stopwatch.GetElapsedTime(after, handled).TotalMilliseconds));
                }
            }

            return (fromStart, fromEnd, _closed.Count - fromStart.Count, Volatile.Read(ref _lost));
        }

        public void OnEvent(PathManagerEvent pathManagerEvent)
        {
            if (pathManagerEvent.Type == PathManagerEventType.Closed)
            {
                _handled.TryAdd(pathManagerEvent.Token, Stopwatch.GetTimestamp());
            }
            else if (pathManagerEvent.Type == PathManagerEventType.EventsLost)
            {
                Interlocked.Increment(ref _lost);
            }
        }

        public void OnCompleted(PathManagerException? error)
        {
        }
    }
}
