using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace MptcpAnycast.Lab;

/// <summary>
/// One client connection of the lab, created inside the client namespace: a tiny HTTP/1.1 keep-alive client that
/// asks the lab's POP server for its state (<c>/mptcp</c>) and for a paced stream (<c>/stream</c>), checks every byte
/// of the stream against <see cref="StreamPattern"/>, hashes it, and times the longest gap between arrivals.
/// </summary>
public sealed class StreamProbe : IDisposable
{
    private readonly Socket _socket;
    private readonly byte[] _buffer = new byte[64 * 1024];
    private int _start;
    private int _end;
    private long _received;
    private long _expected;
    private long _longestGapTicks;
    private long _longestGapEnd;
    private long _lastArrival;
    private int _maxSubflows;

    private readonly bool _blocking;

    private StreamProbe(string name, Socket socket, bool mptcp, bool blocking)
    {
        Name = name;
        _socket = socket;
        RequestedMptcp = mptcp;
        _blocking = blocking;
    }

    public string Name { get; }

    public bool RequestedMptcp { get; }

    public Socket Socket => _socket;

    /// <summary>Body bytes of the stream received so far.</summary>
    public long Received => Interlocked.Read(ref _received);

    public long Expected => Interlocked.Read(ref _expected);

    /// <summary>The longest time between two arrivals of stream data (or from the last one until the end of the wait).</summary>
    public TimeSpan LongestGap => TimeSpan.FromTicks(Interlocked.Read(ref _longestGapTicks) * TimeSpan.TicksPerSecond / Stopwatch.Frequency);

    /// <summary>When the longest gap ended (a <see cref="Stopwatch.GetTimestamp"/> value; 0 before any): was it at a flip?</summary>
    public long LongestGapEndedAt => Interlocked.Read(ref _longestGapEnd);

    public bool PatternIntact { get; private set; } = true;

    public bool Complete { get; private set; }

    public string? Error { get; private set; }

    public byte[]? Sha256 { get; private set; }

    /// <summary>The most subflows seen at once (MPTCP_INFO), 1 for plain TCP.</summary>
    public int MaxSubflows => Volatile.Read(ref _maxSubflows);

    /// <summary>True when the whole stream arrived, intact.</summary>
    public bool Survived => Complete && PatternIntact && Error is null;

    /// <summary>Opens the connection from a socket created in <paramref name="ns"/>.</summary>
    /// <param name="blocking">
    /// Blocking socket calls instead of async ones, for timing single requests without a thread-pool hop between a
    /// response and the next request: the caller then runs the probe on a thread of its own (see
    /// <see cref="RunOnOwnThread{T}"/>). The calls then ignore cancellation tokens; a 5 s socket timeout bounds them.
    /// </param>
    public static async Task<StreamProbe> ConnectAsync(string name, LabNamespace ns, IPEndPoint target, bool mptcp, bool dualStack, CancellationToken cancellationToken, bool blocking = false)
    {
        ArgumentNullException.ThrowIfNull(ns);
        ArgumentNullException.ThrowIfNull(target);
        AddressFamily family = dualStack ? AddressFamily.InterNetworkV6 : target.AddressFamily;
        Socket socket = ns.Run(() =>
        {
            Socket s = mptcp ? MptcpSocket.Create(family) : new Socket(family, SocketType.Stream, ProtocolType.Tcp);
            if (dualStack)
            {
                s.DualMode = true;
            }

            return s;
        });
        try
        {
            socket.NoDelay = true;
            IPEndPoint to = dualStack && target.AddressFamily == AddressFamily.InterNetwork ? new IPEndPoint(target.Address.MapToIPv6(), target.Port) : target;
            if (blocking)
            {
                socket.ReceiveTimeout = socket.SendTimeout = 5000;
                socket.Connect(to); // never an async call on this socket: its descriptor stays blocking
            }
            else
            {
                await socket.ConnectAsync(to, cancellationToken).ConfigureAwait(false);
            }

            return new StreamProbe(name, socket, mptcp, blocking);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Runs <paramref name="work"/> on a dedicated thread and waits for it there: with a blocking probe every await in it
    /// completes at once, so the whole loop stays on that thread and wakes straight from the kernel.
    /// </summary>
    public static Task<T> RunOnOwnThread<T>(Func<Task<T>> work) =>
        Task.Factory.StartNew(() => work().GetAwaiter().GetResult(), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    /// <summary>Subflows now (MPTCP_INFO: the initial one plus the additional ones); 1 for plain TCP.</summary>
    public int CurrentSubflows()
    {
        try
        {
            MptcpConnectionInfo info = MptcpSocket.GetConnectionInfo(_socket);
            int n = info.IsMptcp ? (info.SubflowsTotal > 0 ? info.SubflowsTotal : info.AdditionalSubflows + 1) : 1;
            int max;
            while (n > (max = Volatile.Read(ref _maxSubflows)) && Interlocked.CompareExchange(ref _maxSubflows, n, max) != max)
            {
            }

            return n;
        }
        catch (ObjectDisposedException)
        {
            return 0;
        }
    }

    public MptcpConnectionInfo Info() => MptcpSocket.GetConnectionInfo(_socket);

    /// <summary>GET <paramref name="path"/> and return the body as text (for <c>/mptcp</c>).</summary>
    public async Task<string> GetTextAsync(string path, CancellationToken cancellationToken)
        => await ReadBodyAsync(await SendRequestAsync("GET", path, cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false);

    /// <summary>
    /// Asks the server about this connection (<c>GET /mptcp</c>) until its unicast subflow is settled — joined, timed out
    /// or failed, or the connection is not MPTCP — or <paramref name="timeout"/> passes; returns the last answer. The
    /// server's word counts: the client's own subflow count includes joins still in SYN_SENT.
    /// </summary>
    public async Task<JsonElement> WaitForJoinAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            JsonElement state = JsonDocument.Parse(await GetTextAsync("/mptcp", cancellationToken).ConfigureAwait(false)).RootElement.Clone();
            bool pending = state.GetProperty("mptcp").GetBoolean() && state.GetProperty("state").GetString() is "Announced" or "NotAnnounced";
            if (!pending || clock.Elapsed > timeout)
            {
                CurrentSubflows();
                return state;
            }

            await Task.Delay(20, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>The bytes of a GET request for <paramref name="path"/>, made once for <see cref="FetchAsync"/>.</summary>
    public static byte[] Request(string path) => Encoding.ASCII.GetBytes($"GET {path} HTTP/1.1\r\nHost: anycast\r\nContent-Length: 0\r\n\r\n");

    /// <summary>
    /// Sends a prepared GET (<see cref="Request"/>) and reads the whole response, skipping the body; returns the body
    /// length. Allocates nothing, so that a loop timing single requests never times a garbage collection instead.
    /// The POP server answers with <c>Content-Length</c>; anything else is an error.
    /// </summary>
    public async ValueTask<long> FetchAsync(byte[] request, CancellationToken cancellationToken)
    {
        await SendAsync(request, cancellationToken).ConfigureAwait(false);
        int headEnd = await ReadHeadAsync("GET", cancellationToken).ConfigureAwait(false);
        long length = ParseContentLength(_buffer.AsSpan(_start, headEnd));
        _start += headEnd + 4;
        for (long left = length; left > 0;)
        {
            if (_start == _end && !await FillAsync(cancellationToken).ConfigureAwait(false))
            {
                throw new IOException($"connection closed with {left} body bytes to come");
            }

            int n = (int)Math.Min(_end - _start, left);
            _start += n;
            left -= n;
        }

        return length;
    }

    private static long ParseContentLength(ReadOnlySpan<byte> head)
    {
        if (!head.StartsWith("HTTP/1.1 2"u8))
        {
            throw new IOException($"unexpected response: {Encoding.ASCII.GetString(head[..Math.Min(head.Length, 40)])}");
        }

        int at = head.IndexOf("\r\nContent-Length: "u8);
        if (at < 0 || !System.Buffers.Text.Utf8Parser.TryParse(head[(at + 18)..], out long length, out _) || length < 0)
        {
            throw new IOException("response without a Content-Length");
        }

        return length;
    }

    /// <summary>POST <paramref name="path"/> without a body; returns the response body.</summary>
    public async Task<string> PostAsync(string path, CancellationToken cancellationToken)
        => await ReadBodyAsync(await SendRequestAsync("POST", path, cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false);

    /// <summary>Reads a body of <paramref name="length"/> bytes, or a chunked one when it is -1.</summary>
    private async Task<string> ReadBodyAsync(long length, CancellationToken cancellationToken)
    {
        if (length >= 0)
        {
            return Encoding.UTF8.GetString(await ReadExactAsync((int)length, cancellationToken).ConfigureAwait(false));
        }

        var body = new List<byte>();
        while (true)
        {
            string sizeLine = await ReadLineAsync(cancellationToken).ConfigureAwait(false);
            int size = int.Parse(sizeLine.Split(';')[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            if (size == 0)
            {
                await ReadLineAsync(cancellationToken).ConfigureAwait(false); // the empty line after the last chunk
                return Encoding.UTF8.GetString(body.ToArray());
            }

            body.AddRange(await ReadExactAsync(size, cancellationToken).ConfigureAwait(false));
            await ReadLineAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task<byte[]> ReadExactAsync(int length, CancellationToken cancellationToken)
    {
        var body = new byte[length];
        for (int filled = 0; filled < length;)
        {
            if (_start == _end && !await FillAsync(cancellationToken).ConfigureAwait(false))
            {
                throw new IOException($"connection closed after {filled} of {length} body bytes");
            }

            int n = Math.Min(_end - _start, length - filled);
            _buffer.AsSpan(_start, n).CopyTo(body.AsSpan(filled));
            _start += n;
            filled += n;
        }

        return body;
    }

    private async Task<string> ReadLineAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            int end = _buffer.AsSpan(_start, _end - _start).IndexOf("\r\n"u8);
            if (end >= 0)
            {
                string line = Encoding.ASCII.GetString(_buffer, _start, end);
                _start += end + 2;
                return line;
            }

            if (!await FillAsync(cancellationToken).ConfigureAwait(false))
            {
                throw new IOException("connection closed in a chunked body");
            }
        }
    }

    /// <summary>
    /// GET <c>/stream</c> and read it to the end, checking every byte. Ends when the stream is complete, when the
    /// connection fails, or when no byte arrives for <paramref name="stallLimit"/> (then <see cref="Error"/> says it hung).
    /// </summary>
    public async Task StreamAsync(double seconds, long rate, TimeSpan stallLimit, CancellationToken cancellationToken)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        try
        {
            string path = string.Create(CultureInfo.InvariantCulture, $"/stream?seconds={seconds}&rate={rate}");
            long length = await SendRequestAsync("GET", path, cancellationToken).ConfigureAwait(false);
            if (length < 0)
            {
                throw new IOException("/stream answered without a Content-Length");
            }

            Interlocked.Exchange(ref _expected, length);
            Interlocked.Exchange(ref _lastArrival, Stopwatch.GetTimestamp());
            long offset = 0;
            while (offset < length)
            {
                if (_start == _end)
                {
                    using var stall = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                    stall.CancelAfter(stallLimit);
                    bool more;
                    try
                    {
                        more = await FillAsync(stall.Token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                    {
                        NoteGap(Stopwatch.GetTimestamp());
                        Error = $"hung: no data for {stallLimit.TotalSeconds:0.#} s";
                        return;
                    }

                    if (!more)
                    {
                        Error = "connection closed by the peer";
                        return;
                    }

                    NoteGap(Stopwatch.GetTimestamp());
                    CurrentSubflows();
                }

                int n = (int)Math.Min(_end - _start, length - offset);
                ReadOnlySpan<byte> chunk = _buffer.AsSpan(_start, n);
                if (PatternIntact && !StreamPattern.Matches(chunk, offset))
                {
                    PatternIntact = false;
                }

                hash.AppendData(chunk);
                _start += n;
                offset += n;
                Interlocked.Add(ref _received, n);
            }

            Complete = true;
            Sha256 = hash.GetHashAndReset();
        }
        catch (Exception ex) when (ex is SocketException or IOException or ObjectDisposedException)
        {
            Error = ex is SocketException se ? $"{se.SocketErrorCode}: {se.Message}" : ex.Message;
        }
    }

    /// <summary>True when the whole stream arrived intact and hashes to what <see cref="StreamPattern.Sha256"/> says it should.</summary>
    public bool HashMatches => Survived && Sha256 is not null && Sha256.AsSpan().SequenceEqual(StreamPattern.Sha256(Expected));

    private void NoteGap(long now)
    {
        long last = Interlocked.Exchange(ref _lastArrival, now);
        long gap = now - last;
        long longest;
        while (gap > (longest = Interlocked.Read(ref _longestGapTicks)))
        {
            if (Interlocked.CompareExchange(ref _longestGapTicks, gap, longest) == longest)
            {
                Interlocked.Exchange(ref _longestGapEnd, now);
                break;
            }
        }
    }

    private async Task<long> SendRequestAsync(string method, string path, CancellationToken cancellationToken)
    {
        byte[] request = Encoding.ASCII.GetBytes($"{method} {path} HTTP/1.1\r\nHost: anycast\r\nContent-Length: 0\r\n\r\n");
        await SendAsync(request, cancellationToken).ConfigureAwait(false);
        int end = await ReadHeadAsync($"{method} {path}", cancellationToken).ConfigureAwait(false);
        string head = Encoding.ASCII.GetString(_buffer, _start, end);
        _start += end + 4;
        string[] lines = head.Split("\r\n");
        if (!lines[0].StartsWith("HTTP/1.1 2", StringComparison.Ordinal))
        {
            throw new IOException($"{method} {path}: {lines[0]}");
        }

        foreach (string line in lines)
        {
            if (line.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase))
            {
                return long.Parse(line.AsSpan(15).Trim(), CultureInfo.InvariantCulture);
            }

            if (line.StartsWith("Transfer-Encoding:", StringComparison.OrdinalIgnoreCase) && line.Contains("chunked", StringComparison.OrdinalIgnoreCase))
            {
                return -1;
            }
        }

        throw new IOException($"{method} {path}: neither Content-Length nor chunked");
    }

    private async ValueTask SendAsync(byte[] request, CancellationToken cancellationToken)
    {
        if (_blocking)
        {
            _socket.Send(request, SocketFlags.None);
        }
        else
        {
            await _socket.SendAsync(request, SocketFlags.None, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Reads until the response head is buffered; returns its length from <c>_start</c> (without the blank line).</summary>
    private async ValueTask<int> ReadHeadAsync(string request, CancellationToken cancellationToken)
    {
        int end;
        while ((end = _buffer.AsSpan(_start, _end - _start).IndexOf("\r\n\r\n"u8)) < 0)
        {
            if (!await FillAsync(cancellationToken).ConfigureAwait(false))
            {
                throw new IOException($"{request}: connection closed before the response");
            }
        }

        return end;
    }

    private async Task<bool> FillAsync(CancellationToken cancellationToken)
    {
        if (_start == _end)
        {
            _start = _end = 0;
        }
        else if (_end == _buffer.Length)
        {
            Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
            _end -= _start;
            _start = 0;
        }

        int n = _blocking
            ? _socket.Receive(_buffer.AsSpan(_end), SocketFlags.None)
            : await _socket.ReceiveAsync(_buffer.AsMemory(_end), SocketFlags.None, cancellationToken).ConfigureAwait(false);
        _end += n;
        return n > 0;
    }

    public void Dispose() => _socket.Dispose();
}
