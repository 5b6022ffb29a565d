using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using MptcpAnycast.Lab.Tests.Infrastructure;
using MptcpAnycast.Lab.Tests.Lab;

namespace MptcpAnycast.Lab.Tests.Rescue;

/// <summary>
/// A listener in a POP namespace (MPTCP, as a POP's server is; plain TCP clients fall back) that reads whatever each
/// accepted connection sends and checks that it is the lab's pattern (<see cref="StreamPattern"/>). A connection can be
/// aborted: closed with linger 0, so its socket is gone at once and the kernel sends a RST.
/// </summary>
internal sealed class SinkServer : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new(TimeSpan.FromMinutes(3));
    private readonly ConcurrentQueue<SinkConnection> _connections = new();
    private readonly Task _acceptLoop;

    private SinkServer(Socket listener)
    {
        _listener = listener;
        _acceptLoop = AcceptLoopAsync();
    }

    public IReadOnlyCollection<SinkConnection> Connections => _connections;

    public static SinkServer Start(LabNamespace ns, IPEndPoint endPoint) => new(ns.Run(() => MptcpSocket.CreateListener(endPoint)));

    /// <summary>Waits (bounded) for the <paramref name="count"/>-th accepted connection; fails the test when it does not come.</summary>
    public async Task<SinkConnection> WaitForConnectionAsync(int count, TimeSpan timeout)
    {
        await Eventually.TrueAsync(() => _connections.Count >= count, $"connection {count} accepted", timeout);
        return _connections.ElementAt(count - 1);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Dispose();
        foreach (SinkConnection connection in _connections)
        {
            connection.Socket.Dispose();
        }

        Task all = Task.WhenAll(_connections.Select(c => (Task)c.Completion).Append(_acceptLoop));
        await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(5)));
        _stop.Dispose();
    }

    private async Task AcceptLoopAsync()
    {
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                Socket accepted = await _listener.AcceptAsync(_stop.Token);
                _connections.Enqueue(new SinkConnection(accepted, _stop.Token));
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
        {
            // Stopped.
        }
    }
}

/// <summary>One accepted connection of a <see cref="SinkServer"/>.</summary>
internal sealed class SinkConnection
{
    private long _received;
    private int _broken;

    public SinkConnection(Socket socket, CancellationToken cancellationToken)
    {
        Socket = socket;
        Completion = ReadAsync(cancellationToken);
    }

    public Socket Socket { get; }

    public long Received => Interlocked.Read(ref _received);

    /// <summary>Whether every byte so far was the pattern at its offset.</summary>
    public bool Intact => Volatile.Read(ref _broken) == 0;

    /// <summary>Null when the client ended its side (EOF), else what went wrong.</summary>
    public Task<string?> Completion { get; }

    /// <summary>Closes the socket with linger 0: the kernel sends a RST and forgets the connection.</summary>
    public void Abort()
    {
        try
        {
            Socket.LingerState = new LingerOption(true, 0);
        }
        catch (SocketException)
        {
            // Already reset.
        }

        Socket.Dispose();
    }

    private async Task<string?> ReadAsync(CancellationToken cancellationToken)
    {
        await Task.Yield();
        byte[] buffer = new byte[64 * 1024];
        try
        {
            while (true)
            {
                int n = await Socket.ReceiveAsync(buffer, SocketFlags.None, cancellationToken);
                if (n == 0)
                {
                    Socket.Shutdown(SocketShutdown.Send);
                    return null;
                }

                if (!StreamPattern.Matches(buffer.AsSpan(0, n), Received))
                {
                    Interlocked.Exchange(ref _broken, 1);
                }

                Interlocked.Add(ref _received, n);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            return ex is SocketException se ? se.SocketErrorCode.ToString() : ex.GetType().Name;
        }
    }
}

/// <summary>
/// A plain TCP client that uploads the lab's pattern at a steady rate, one write every tick (with TCP_NODELAY, so every
/// write is a segment at once and reaches whichever POP the route points at), and reads at the same time so that a RST
/// is seen the moment it arrives. Records the first error and when it happened. Both loops run on threads of their own
/// with blocking calls: the test's thread pool stalls for hundreds of milliseconds at times (a flip starts processes and
/// waits for them), which would otherwise show as a late reset or a client that stops sending.
/// </summary>
internal sealed class PacedUpload : IDisposable
{
    private readonly long _total;
    private readonly int _bytesPerSecond;
    private readonly TimeSpan _tick;
    private readonly TaskCompletionSource _sending = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _receiving = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _sent;
    private long _errorAt;
    private string? _error;
    private int _reset;
    private volatile bool _disposed;

    private PacedUpload(Socket socket, long total, int bytesPerSecond, TimeSpan tick)
    {
        Socket = socket;
        _total = total;
        _bytesPerSecond = bytesPerSecond;
        _tick = tick;
        new Thread(SendLoop) { IsBackground = true, Name = "paced upload: send" }.Start();
        new Thread(ReceiveLoop) { IsBackground = true, Name = "paced upload: receive" }.Start();
    }

    public Socket Socket { get; }

    public long Sent => Interlocked.Read(ref _sent);

    /// <summary>
    /// <c>ConnectionReset</c> when the connection was reset (the kernel reports a RST to one call only, the send or the
    /// receive; the other sees <c>Shutdown</c> or the end), else the first error, or null.
    /// </summary>
    public string? Error => Volatile.Read(ref _reset) != 0 ? nameof(SocketError.ConnectionReset) : Volatile.Read(ref _error);

    /// <summary>The <see cref="Stopwatch.GetTimestamp"/> of the first error; 0 while there is none.</summary>
    public long ErrorAt => Interlocked.Read(ref _errorAt);

    /// <summary>Completes when everything was sent and the sending side shut down, or at the first send error.</summary>
    public Task Sending => _sending.Task;

    /// <summary>Completes when the server closed its side or the connection failed.</summary>
    public Task Receiving => _receiving.Task;

    /// <summary>The client's current MSS (<c>TCP_MAXSEG</c>: what one segment carries, after the options).</summary>
    public int MaxSegment
    {
        get
        {
            Span<byte> value = stackalloc byte[4];
            Socket.GetRawSocketOption(6 /* IPPROTO_TCP */, 2 /* TCP_MAXSEG */, value);
            return BitConverter.ToInt32(value);
        }
    }

    public static async Task<PacedUpload> StartAsync(LabNamespace client, IPEndPoint server, long total, int bytesPerSecond, TimeSpan tick)
    {
        Socket socket = client.Run(() => new Socket(server.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true });
        try
        {
            await socket.ConnectAsync(server).WithTimeout(TimeSpan.FromSeconds(5), $"connect to {server}");
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        return new PacedUpload(socket, total, bytesPerSecond, tick);
    }

    /// <summary>Seconds from <paramref name="since"/> (a <see cref="Stopwatch"/> timestamp) to the first error.</summary>
    public double ErrorSecondsAfter(long since) => (ErrorAt - since) / (double)Stopwatch.Frequency;

    public void Dispose()
    {
        _disposed = true;
        Socket.Dispose();
    }

    private void Fail(Exception ex)
    {
        long now = Stopwatch.GetTimestamp();
        if (_disposed)
        {
            return;
        }

        string what = ex is SocketException se ? se.SocketErrorCode.ToString() : ex.GetType().Name;
        if (ex is SocketException { SocketErrorCode: SocketError.ConnectionReset })
        {
            Volatile.Write(ref _reset, 1);
        }

        if (Interlocked.CompareExchange(ref _error, what, null) is null)
        {
            Interlocked.Exchange(ref _errorAt, now);
        }
    }

    private void SendLoop()
    {
        byte[] buffer = new byte[(int)Math.Max(4096, _bytesPerSecond * _tick.TotalSeconds * 4)];
        var clock = Stopwatch.StartNew();
        try
        {
            while (Sent < _total && !_disposed)
            {
                long due = Math.Min(_total, (long)(_bytesPerSecond * clock.Elapsed.TotalSeconds) + 1);
                while (Sent < due)
                {
                    int n = (int)Math.Min(buffer.Length, due - Sent);
                    StreamPattern.Fill(buffer.AsSpan(0, n), Sent);
                    int written = Socket.Send(buffer, 0, n, SocketFlags.None);
                    Interlocked.Add(ref _sent, written);
                }

                Thread.Sleep(_tick);
            }

            Socket.Shutdown(SocketShutdown.Send);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            Fail(ex);
        }
        finally
        {
            _sending.TrySetResult();
        }
    }

    private void ReceiveLoop()
    {
        byte[] buffer = new byte[4096];
        try
        {
            while (Socket.Receive(buffer) > 0)
            {
                // The sink sends nothing; a read returns at its FIN or fails at a RST.
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            Fail(ex);
        }
        finally
        {
            _receiving.TrySetResult();
        }
    }
}

/// <summary>
/// Raises the thread pool's minimum while a test runs hundreds of sockets, their servers and the lab's commands in this
/// process. With the default (one thread per core) a flip, which blocks a pool thread while <c>ip</c> runs, starved
/// the 200 streams' reads for 750-800 ms on the 2-core machine: the test's stall, not the network's. What is left
/// (150-320 ms for every stream alike) shows as well in a run without any flip.
/// </summary>
internal sealed class ThreadPoolHeadroom : IDisposable
{
    private readonly int _workers;
    private readonly int _completionPorts;

    public ThreadPoolHeadroom(int threads)
    {
        ThreadPool.GetMinThreads(out _workers, out _completionPorts);
        ThreadPool.SetMinThreads(Math.Max(threads, _workers), Math.Max(threads, _completionPorts));
    }

    public void Dispose() => ThreadPool.SetMinThreads(_workers, _completionPorts);
}

/// <summary>Lab manipulations the rescue tests share: router rules, the agent's restart, interface counters.</summary>
internal static class RescueLab
{
    /// <summary>Loads an nft table <c>inet NAME</c> with one filter chain on <paramref name="hook"/> in the router.</summary>
    public static void AddRouterRules(LabTopology lab, string name, string hook, int priority, params string[] rules)
    {
        string body = string.Join(Environment.NewLine, rules.Select(r => "    " + r));
        lab.Router.Nft($$"""
            table inet {{name}} {
              chain filter {
                type filter hook {{hook}} priority {{priority.ToString(CultureInfo.InvariantCulture)}}; policy accept;
            {{body}}
              }
            }
            """);
    }

    /// <summary>Removes the router's nft table <c>inet NAME</c>.</summary>
    public static void RemoveRouterRules(LabTopology lab, string name) => lab.Router.Exec("nft", "delete", "table", "inet", name);

    /// <summary>The packets the router's table <c>inet NAME</c> counted (the sum of its rules' <c>counter</c>s).</summary>
    public static long RouterRuleHits(LabTopology lab, string name)
    {
        using JsonDocument json = JsonDocument.Parse(lab.Router.Exec("nft", "-j", "list", "table", "inet", name));
        long packets = 0;
        foreach (JsonElement item in json.RootElement.GetProperty("nftables").EnumerateArray())
        {
            if (item.TryGetProperty("rule", out JsonElement rule))
            {
                foreach (JsonElement expression in rule.GetProperty("expr").EnumerateArray())
                {
                    if (expression.TryGetProperty("counter", out JsonElement counter))
                    {
                        packets += counter.GetProperty("packets").GetInt64();
                    }
                }
            }
        }

        return packets;
    }

    /// <summary>The TX drops of <paramref name="pop"/>'s uplink (<c>ip -s link</c>): where a packet too big for the link dies.</summary>
    public static long UplinkTxDropped(LabPop pop) => TxCounter(pop, pop.Interface, "dropped");

    /// <summary>One transmit counter (<c>packets</c>, <c>bytes</c>, <c>dropped</c> ...) of a device of <paramref name="pop"/>, from <c>ip -s link</c>.</summary>
    public static long TxCounter(LabPop pop, string device, string counter)
    {
        using JsonDocument json = JsonDocument.Parse(pop.Namespace.Ip("-s", "-j", "link", "show", "dev", device));
        return json.RootElement[0].GetProperty("stats64").GetProperty("tx").GetProperty(counter).GetInt64();
    }

    /// <summary>Turns TSO and GSO off on the client's uplink: every segment leaves at most one MSS long, as from a real NIC.</summary>
    public static void ClientSegmentationOff(LabTopology lab)
    {
        CommandResult result = lab.Client.TryExec("ethtool", "-K", LabTopology.UplinkInterface, "tso", "off", "gso", "off");
        if (!result.Succeeded)
        {
            throw new InvalidOperationException(
                $"ethtool -K {LabTopology.UplinkInterface} tso off gso off failed in {lab.Client} (Debian: apt-get install ethtool): {result.Output.Trim()}");
        }
    }

    /// <summary>
    /// Starts the agent of <paramref name="pop"/> again from the configuration the lab's agents were started with (the
    /// same key; <see cref="LabRescue.StartAsync"/> would write new configurations with a new key, which the running
    /// agents of the other POPs do not know), under <paramref name="wrapper"/> if given, and waits until it writes its
    /// status. The status file a killed agent left stays until then: the new agent reads its predecessor's program ids
    /// from it.
    /// </summary>
    public static async Task<ChildProcess> RestartAgentAsync(LabTopology lab, LabPopId pop, IReadOnlyList<string>? wrapper = null)
    {
        string config = Path.Combine(LabRescue.DirectoryOf(lab.Options.Prefix), LabRescue.AgentName(pop) + ".json");
        string status = LabRescue.StatusPathOf(lab.Options.Prefix, pop);
        DateTime restarted = DateTime.UtcNow;
        ChildProcess agent = lab.Pop(pop).Namespace.Start([.. wrapper ?? [], .. LabTool.Command.With(["rescue", "run", "--config", config, "--verbose"])]);
        var clock = Stopwatch.StartNew();
        while (!File.Exists(status) || File.GetLastWriteTimeUtc(status) < restarted)
        {
            if (agent.HasExited || clock.Elapsed > LabRescue.StartTimeout)
            {
                string output = agent.Output;
                agent.Dispose();
                throw new InvalidOperationException($"the restarted rescue agent in {lab.Pop(pop).Namespace} wrote no status:\n{output}");
            }

            await Task.Delay(50);
        }

        return agent;
    }

    /// <summary>The counters of every POP that are not zero, one line per POP.</summary>
    public static string DescribeCounters(LabTopology lab, Func<LabPopId, IReadOnlyDictionary<string, long>> counters) =>
        string.Join(Environment.NewLine, lab.Pops.Select(p =>
            $"POP {p.Id}: {string.Join(", ", counters(p.Id).Where(c => c.Value != 0).Select(c => $"{c.Key}={c.Value}"))}"));

    /// <summary>
    /// The programs on <paramref name="interface"/>'s tcx hooks and at the rescue handle of its clsact qdisc, as the
    /// kernel of <paramref name="ns"/> reports them ("tcx-ingress ID rescue_ingress", ...).
    /// </summary>
    public static List<string> AttachedPrograms(LabNamespace ns, string @interface)
    {
        int ifindex = InterfaceIndex(ns, @interface);
        return ns.Run(() => MptcpAnycast.Rescue.Bpf.TcAttachment.Describe(ifindex));
    }

    /// <summary>The index of <paramref name="interface"/> in <paramref name="ns"/> (<c>ip -j link show</c>).</summary>
    public static int InterfaceIndex(LabNamespace ns, string @interface)
    {
        using JsonDocument link = JsonDocument.Parse(ns.Ip("-j", "link", "show", @interface));
        return link.RootElement[0].GetProperty("ifindex").GetInt32();
    }

    private static readonly Lazy<string> NoTcx = new(() => Compile("no-tcx"));

    /// <summary>
    /// A wrapper that runs a command as if on a kernel without tcx, before Linux 6.6 (<c>Rescue/no-tcx.c</c>: a seccomp
    /// filter refuses the tcx commands of bpf(2) with EINVAL), built with gcc on first use.
    /// </summary>
    public static string[] WithoutTcx => [NoTcx.Value];

    private static readonly Lazy<string> SlowPin = new(() => Compile("slow-pin", library: true));

    /// <summary>
    /// A wrapper that makes an agent wait <paramref name="milliseconds"/> before it renames each of its program pins
    /// (<c>Rescue/slow-pin.c</c>, preloaded), which it does after swapping its programs onto the hooks and before its
    /// start is done; the agent's output then holds a "slow-pin: held" line per pin.
    /// </summary>
    public static string[] WithSlowPins(int milliseconds) =>
        ["env", "LD_PRELOAD=" + SlowPin.Value, "SLOW_PIN_MS=" + milliseconds.ToString(CultureInfo.InvariantCulture)];

    private static string Compile(string name, bool library = false)
    {
        string source = Path.Combine(AppContext.BaseDirectory, "Rescue", name + ".c");
        string output = Path.Combine(AppContext.BaseDirectory, library ? name + ".so" : name);
        var psi = new ProcessStartInfo("gcc")
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        string[] arguments = library
            ? ["-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-o", output, source, "-ldl"]
            : ["-O2", "-Wall", "-Wextra", "-Werror", "-o", output, source];
        foreach (string argument in arguments)
        {
            psi.ArgumentList.Add(argument);
        }
        Process gcc;
        try
        {
            gcc = Process.Start(psi)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"cannot run gcc to build {source} (apt-get install gcc libc6-dev linux-libc-dev)", e);
        }

        using (gcc)
        {
            Task<string> errors = gcc.StandardError.ReadToEndAsync();
            gcc.StandardOutput.ReadToEnd();
            if (!gcc.WaitForExit(60_000) || gcc.ExitCode != 0)
            {
                throw new InvalidOperationException($"gcc could not build {source}:\n{errors.Result}");
            }
        }

        return output;
    }

    /// <summary>
    /// A plain TCP client streams 512 KiB from a server in POP A across a flip to B (the lab's route starts at A) and
    /// returns how the stream ended, once B's agent reports tunnelled segments or within its status's second.
    /// </summary>
    public static async Task<StreamOutcome> StreamAcrossFlipToBAsync(LabTopology lab, LabRescue rescue, int port)
    {
        var spec = new PacedStreamSpec(512 * 1024, 256 * 1024);
        await using PacedStreamServer serverA = PacedStreamServer.Start(lab.Pop(LabPopId.A).Namespace, new IPEndPoint(IPAddress.Any, port), spec);
        using Socket client = lab.Client.Run(() => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
        await client.ConnectAsync(new IPEndPoint(IPAddress.Parse(lab.Plan.Anycast4), port)).WithTimeout(TimeSpan.FromSeconds(5), "connect");
        StreamReceiver receiver = StreamReceiver.Start(client, spec, TaskTimeoutExtensions.Within(TimeSpan.FromSeconds(30)));
        Assert.True(await receiver.WaitForAsync(64 * 1024, TimeSpan.FromSeconds(5)), "the stream did not start");
        lab.FlipTo(LabPopId.B);
        StreamOutcome outcome = await receiver.Completion.WaitAsync(TimeSpan.FromSeconds(20));
        if (outcome.Complete)
        {
            await Eventually.TrueAsync(() => rescue.Counters(LabPopId.B).GetValueOrDefault("program.tunnelled") > 0, "B tunnelled");
        }

        return outcome;
    }

    /// <summary>Sends <paramref name="length"/> bytes of the lab's pattern from stream offset <paramref name="offset"/>.</summary>
    public static async Task SendPatternAsync(Socket socket, long offset, int length)
    {
        byte[] chunk = new byte[length];
        StreamPattern.Fill(chunk, offset);
        await socket.SendAsync(chunk, SocketFlags.None).WithTimeout(TimeSpan.FromSeconds(5), "send to the anycast address");
    }

    /// <summary>Milliseconds between two <see cref="Stopwatch"/> timestamps.</summary>
    public static double Milliseconds(long from, long to) => (to - from) * 1000.0 / Stopwatch.Frequency;
}

/// <summary>
/// A bpffs of the test's own, for <c>PinDirectory</c> (<c>ip netns exec</c> gives each agent a fresh /sys, without the
/// host's /sys/fs/bpf); unmounted and removed on dispose.
/// </summary>
internal sealed class TestBpffs : IDisposable
{
    public TestBpffs(LabTopology lab, string? owner = null)
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), lab.Options.Prefix + "-bpffs");
        Directory.CreateDirectory(Path);
        CommandRunner.Run("mount", ["-t", "bpf", "bpf", Path]);
        if (owner is not null)
        {
            CommandRunner.Run("chown", [owner, Path]);
        }
    }

    public string Path { get; }

    public void Dispose()
    {
        CommandRunner.TryRun("umount", [Path]);
        Directory.Delete(Path);
    }
}
