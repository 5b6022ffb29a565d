using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;

namespace MptcpAnycast.Lab.Tests.Lab;

/// <summary>A bounded, paced stream of the lab's test bytes (<see cref="StreamPattern"/>: byte <c>i</c> is <c>i mod 251</c>).</summary>
public sealed record PacedStreamSpec(long TotalBytes, int BytesPerSecond)
{
    public static PacedStreamSpec Default { get; } = new(512 * 1024, 256 * 1024);

    public TimeSpan Duration => TimeSpan.FromSeconds((double)TotalBytes / BytesPerSecond);
}

/// <summary>
/// A tiny server inside a POP namespace: an MPTCP listener (made on a thread that entered the namespace) that sends
/// every accepted connection the paced stream, then shuts down its sending side. The accepted sockets stay open so a
/// test can read the connection state the server sees. Each connection writes what is due, then waits one tick
/// (5 ms by default); a coarser tick lets hundreds of streams cost the 2-core machine thousands of segments a second,
/// not tens of thousands.
/// </summary>
public sealed class PacedStreamServer : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly PacedStreamSpec _spec;
    private static readonly TimeSpan DefaultTick = TimeSpan.FromMilliseconds(5);
    private readonly TimeSpan _tick;
    private readonly CancellationTokenSource _stop = new(TimeSpan.FromMinutes(3));
    private readonly ConcurrentQueue<ServerConnection> _connections = new();
    private readonly Task _acceptLoop;

    private PacedStreamServer(Socket listener, PacedStreamSpec spec, TimeSpan tick)
    {
        _listener = listener;
        _spec = spec;
        _tick = tick;
        _acceptLoop = AcceptLoopAsync();
    }

    public IReadOnlyCollection<ServerConnection> Connections => _connections;

    public static PacedStreamServer Start(LabNamespace ns, IPEndPoint endPoint, PacedStreamSpec spec, TimeSpan? tick = null) =>
        new(ns.Run(() => MptcpSocket.CreateListener(endPoint)), spec, tick ?? DefaultTick);

    /// <summary>Waits (bounded) for the <paramref name="count"/>-th accepted connection.</summary>
    public async Task<ServerConnection?> WaitForConnectionAsync(int count, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            if (_connections.Count >= count)
            {
                return _connections.ElementAt(count - 1);
            }

            await Task.Delay(10);
        }

        return null;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Dispose();
        foreach (ServerConnection connection in _connections)
        {
            connection.Socket.Dispose();
        }

        Task all = Task.WhenAll(_connections.Select(c => c.Streaming).Append(_acceptLoop));
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
                _connections.Enqueue(new ServerConnection(accepted, StreamAsync(accepted)));
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
        {
            // Stopped.
        }
    }

    private async Task StreamAsync(Socket socket)
    {
        await Task.Yield();
        byte[] buffer = new byte[(int)Math.Max(16 * 1024, _spec.BytesPerSecond * _tick.TotalSeconds * 4)];
        var clock = Stopwatch.StartNew();
        long sent = 0;
        try
        {
            while (sent < _spec.TotalBytes)
            {
                long due = Math.Min(_spec.TotalBytes, (long)(_spec.BytesPerSecond * clock.Elapsed.TotalSeconds) + 1024);
                while (sent < due)
                {
                    int n = (int)Math.Min(buffer.Length, due - sent);
                    StreamPattern.Fill(buffer.AsSpan(0, n), sent);
                    sent += await socket.SendAsync(buffer.AsMemory(0, n), SocketFlags.None, _stop.Token);
                }

                if (sent < _spec.TotalBytes)
                {
                    await Task.Delay(_tick, _stop.Token);
                }
            }

            socket.Shutdown(SocketShutdown.Send);
        }
        catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
        {
            // The connection died (expected in the cases that do not survive) or the test ended.
        }
    }
}

/// <summary>One accepted connection of a <see cref="PacedStreamServer"/>.</summary>
public sealed record ServerConnection(Socket Socket, Task Streaming)
{
    public MptcpConnectionInfo Info => MptcpSocket.GetConnectionInfo(Socket);

    /// <summary>Joined: the server has at least one additional subflow (a join completed its handshake).</summary>
    public bool HasJoined => Info.IsMptcp && Info.AdditionalSubflows >= 1;
}

/// <summary>What the client received.</summary>
public sealed record StreamOutcome(long Received, long Expected, bool Intact, double LongestGapMs, string? Error)
{
    public bool Complete => Received == Expected && Intact && Error is null;
}

/// <summary>Reads a paced stream to its end, hashing it and timing the longest gap between two reads.</summary>
public sealed class StreamReceiver
{
    private readonly Socket _socket;
    private readonly PacedStreamSpec _spec;
    private long _received;

    private StreamReceiver(Socket socket, PacedStreamSpec spec, CancellationToken cancellationToken)
    {
        _socket = socket;
        _spec = spec;
        Completion = ReceiveAsync(cancellationToken);
    }

    public long Received => Interlocked.Read(ref _received);

    public Task<StreamOutcome> Completion { get; }

    public static StreamReceiver Start(Socket socket, PacedStreamSpec spec, CancellationToken cancellationToken) => new(socket, spec, cancellationToken);

    /// <summary>Waits (bounded) until at least <paramref name="bytes"/> have arrived or the stream ended.</summary>
    public async Task<bool> WaitForAsync(long bytes, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout && !Completion.IsCompleted)
        {
            if (Received >= bytes)
            {
                return true;
            }

            await Task.Delay(5);
        }

        return Received >= bytes;
    }

    private async Task<StreamOutcome> ReceiveAsync(CancellationToken cancellationToken)
    {
        await Task.Yield();
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] buffer = new byte[64 * 1024];
        long lastRead = 0;
        long longestGap = 0;
        string? error = null;
        try
        {
            while (true)
            {
                int n = await _socket.ReceiveAsync(buffer, SocketFlags.None, cancellationToken);
                long now = Stopwatch.GetTimestamp();
                if (lastRead != 0)
                {
                    longestGap = Math.Max(longestGap, now - lastRead);
                }

                if (n == 0)
                {
                    break;
                }

                lastRead = now;
                hash.AppendData(buffer, 0, n);
                Interlocked.Add(ref _received, n);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            error = ex is SocketException se ? $"{se.SocketErrorCode}" : ex.GetType().Name;
        }

        long received = Received;
        bool intact = hash.GetHashAndReset().AsSpan().SequenceEqual(StreamPattern.Sha256(received));
        return new StreamOutcome(received, _spec.TotalBytes, intact, longestGap * 1000.0 / Stopwatch.Frequency, error);
    }
}
