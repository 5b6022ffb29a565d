using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;

namespace MptcpAnycast.Rescue.Peers;

/// <summary>
/// The peer-lookup protocol's endpoint: UDP sockets bound to this POP's unicast addresses (one per family, so each
/// datagram leaves from the exact address the peers have configured, which a wildcard or dual-stack socket would leave
/// to the routing table), a receive thread per socket, and the queries this POP is waiting on. An authentic query is
/// answered at once from <c>isOwned</c> (a fast, synchronous lookup); an authentic answer completes the pending query
/// with the same id, peer and flow. Everything else is counted by its reason and dropped.
/// </summary>
/// <remarks>
/// The receive threads are dedicated rather than thread-pool work so that answering stays prompt when the pool is busy,
/// which is when a route change brings many rescues at once. A datagram costs no allocation on the receive side
/// except the <see cref="TcpFlow"/> handed to <c>isOwned</c>; a lookup allocates its bookkeeping, bounded by the
/// outbound rate.
/// </remarks>
internal sealed class PeerChannel : IDisposable, IAsyncDisposable
{
    private static readonly TimeSpan JoinTimeout = TimeSpan.FromSeconds(5);

    private readonly PeerDirectory _directory;
    private readonly Func<TcpFlow, bool> _isOwned;
    private readonly TimeProvider _time;
    private readonly TokenBucket _outbound;
    private readonly PeerChannelCounters _counters = new();
    private readonly ConcurrentDictionary<uint, PendingQuery> _pending = new();
    private readonly Socket? _socket4;
    private readonly Socket? _socket6;
    private readonly List<Thread> _receivers = [];
    private readonly CancellationTokenSource _disposing = new();
    private int _disposed;
    private uint _nextQueryId;

    /// <param name="options">The configuration; invalid settings throw here.</param>
    /// <exception cref="PeerChannelBindException">A socket cannot be bound (the port is in use, the address is not this host's).</exception>
    /// <param name="isOwned">Whether this POP owns a flow; called on a receive thread for each authentic query. Its exceptions are counted and the query goes unanswered.</param>
    /// <param name="time">The clock for rate limits, sequence numbers and deadlines; the system's by default.</param>
    public PeerChannel(PeerChannelOptions options, Func<TcpFlow, bool> isOwned, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(isOwned);
        _time = time ?? TimeProvider.System;
        _directory = new PeerDirectory(options, _time);
        _isOwned = isOwned;
        _outbound = new TokenBucket(options.OutboundQueriesPerSecond, options.OutboundQueryBurst, _time);

        // A random start, so that an answer to a query of an earlier run cannot complete one of this run by chance.
        _nextQueryId = (uint)RandomNumberGenerator.GetInt32(int.MaxValue);
        try
        {
            _socket4 = options.LocalIPv4 is null ? null : Bind(options.LocalIPv4.Unmapped(), options.Port);
            _socket6 = options.LocalIPv6 is null ? null : Bind(options.LocalIPv6, options.Port);
        }
        catch
        {
            _socket4?.Dispose();
            throw;
        }

        foreach (Socket socket in new[] { _socket4, _socket6 }.OfType<Socket>())
        {
            var thread = new Thread(() => ReceiveLoop(socket))
            {
                IsBackground = true,
                Name = $"rescue peer lookup {socket.LocalEndPoint}",
            };
            _receivers.Add(thread);
            thread.Start();
        }
    }

    public string LocalName => _directory.LocalName;

    /// <summary>The bound addresses and ports (the ports the kernel chose when the options said 0).</summary>
    public IReadOnlyList<IPEndPoint> LocalEndPoints =>
        [.. new[] { _socket4, _socket6 }.OfType<Socket>().Select(static s => (IPEndPoint)s.LocalEndPoint!)];

    public IReadOnlyList<RescuePeer> Peers => [.. _directory.Peers.Select(static p => p.Peer)];

    /// <summary>The counters now (read one by one: exact once traffic has stopped).</summary>
    public PeerChannelStatistics Statistics => _counters.Snapshot();

    /// <summary>Queries waiting for an answer: 0 when no lookup is in progress.</summary>
    internal int PendingCount => _pending.Count;

    /// <summary>Asks one peer whether it owns <paramref name="flow"/>, waiting up to <paramref name="timeout"/>.</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="ObjectDisposedException">The channel was disposed.</exception>
    public async ValueTask<PeerAnswer> QueryAsync(RescuePeer peer, TcpFlow flow, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(peer);
        PeerLookupResult result = await FindOwnerAsync([peer], flow, timeout, cancellationToken).ConfigureAwait(false);
        PeerAnswerKind kind = result.Owner is not null ? PeerAnswerKind.Owned
            : result.NotOwned > 0 ? PeerAnswerKind.NotOwned
            : result.RateLimited > 0 ? PeerAnswerKind.RateLimited
            : result.SendFailed > 0 ? PeerAnswerKind.SendFailed
            : PeerAnswerKind.TimedOut;
        return new PeerAnswer(peer, kind);
    }

    /// <summary>
    /// Asks all of <paramref name="peers"/> at once whether they own <paramref name="flow"/>; returns as soon as one
    /// says it does, when all have said they do not, or at <paramref name="timeout"/>. A caller with a likely owner
    /// (a hint) can ask it alone first with <see cref="QueryAsync"/>. Peers are matched to the configuration by name.
    /// </summary>
    /// <exception cref="ArgumentException">A peer is not one of the configured peers.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="ObjectDisposedException">The channel was disposed.</exception>
    public async ValueTask<PeerLookupResult> FindOwnerAsync(
        IReadOnlyList<RescuePeer> peers, TcpFlow flow, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(peers);
        if (timeout < TimeSpan.Zero && timeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "the timeout is negative");
        }

        ObjectDisposedException.ThrowIf(_disposing.IsCancellationRequested, this);
        cancellationToken.ThrowIfCancellationRequested();
        var states = new PeerState[peers.Count];
        for (int i = 0; i < states.Length; i++)
        {
            states[i] = _directory.TryGet(peers[i].Name, out PeerState? state)
                ? state
                : throw new ArgumentException($"'{peers[i].Name}' is not a configured peer", nameof(peers));
        }

        var wire = WireFlow.From(flow);
        var pending = new List<PendingQuery>(states.Length);
        int rateLimited = 0, sendFailed = 0, notOwned = 0, unanswered = 0;
        RescuePeer? owner = null;
        try
        {
            foreach (PeerState state in states)
            {
                switch (Send(state, wire, out PendingQuery? query))
                {
                    case SendOutcome.Sent:
                        pending.Add(query!);
                        break;
                    case SendOutcome.RateLimited:
                        rateLimited++;
                        break;
                    default:
                        sendFailed++;
                        break;
                }
            }

            if (pending.Count > 0)
            {
                using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _disposing.Token);
                Task deadline = Task.Delay(timeout, _time, stop.Token);
                var waiting = new List<Task>(pending.Count + 1) { deadline };
                waiting.AddRange(pending.Select(static q => (Task)q.Completion.Task));
                while (waiting.Count > 1)
                {
                    Task done = await Task.WhenAny(waiting).ConfigureAwait(false);
                    if (done == deadline)
                    {
                        if (deadline.IsCanceled)
                        {
                            ObjectDisposedException.ThrowIf(_disposing.IsCancellationRequested, this);
                            cancellationToken.ThrowIfCancellationRequested();
                        }

                        break;
                    }

                    waiting.Remove(done);
                    PendingQuery answered = pending.First(q => q.Completion.Task == done);
                    if (answered.Completion.Task.Result == PeerVerdict.Owned)
                    {
                        owner = answered.Peer.Peer;
                        break;
                    }

                    notOwned++;
                }

                unanswered = waiting.Count - 1;
                if (owner is null && unanswered > 0)
                {
                    _counters.Add(PeerCounter.QueriesTimedOut, unanswered);
                }

                stop.Cancel(); // the timer, when the lookup ended before it
            }
        }
        finally
        {
            foreach (PendingQuery query in pending)
            {
                _pending.TryRemove(new KeyValuePair<uint, PendingQuery>(query.Id, query));
            }
        }

        return new PeerLookupResult(owner, states.Length, notOwned, unanswered, rateLimited, sendFailed);
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _disposing.Cancel();
        _socket4?.Dispose();
        _socket6?.Dispose();
        foreach (Thread thread in _receivers)
        {
            if (thread != Thread.CurrentThread)
            {
                thread.Join(JoinTimeout);
            }
        }
    }

    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }

    private static Socket Bind(IPAddress address, int port)
    {
        var socket = new Socket(address.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            // Room for a burst of queries after a route change; the kernel caps it at net.core.rmem_max.
            socket.ReceiveBufferSize = 1 << 20;
            socket.Bind(new IPEndPoint(address, port));
            return socket;
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new PeerChannelBindException(new IPEndPoint(address, port), e);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private Socket SocketFor(PeerState peer) =>
        (peer.Remote.AddressFamily == AddressFamily.InterNetwork ? _socket4 : _socket6)
        ?? throw new InvalidOperationException($"no local socket of the family of {peer.Remote}"); // the directory checked this

    private SendOutcome Send(PeerState peer, in WireFlow flow, out PendingQuery? query)
    {
        query = null;
        if (!_outbound.TryAcquire())
        {
            _counters.Add(PeerCounter.OutboundRateLimited);
            return SendOutcome.RateLimited;
        }

        var entry = new PendingQuery(peer, flow);
        uint id;
        do
        {
            id = Interlocked.Increment(ref _nextQueryId);
        }
        while (!_pending.TryAdd(id, entry));
        entry.Id = id;

        Span<byte> datagram = stackalloc byte[PeerMessageCodec.MaxLength];
        int length = PeerMessageCodec.Encode(
            datagram, _directory.LocalNameBytes, new PeerMessage(PeerMessageType.Query, peer.NextSequence(), id, flow, PeerVerdict.None), peer.Key);
        try
        {
            SocketFor(peer).SendTo(datagram[..length], SocketFlags.None, peer.RemoteAddress);
        }
        catch (SocketException)
        {
            _pending.TryRemove(id, out _);
            _counters.Add(PeerCounter.QuerySendFailures);
            return SendOutcome.SendFailed;
        }
        catch (ObjectDisposedException)
        {
            _pending.TryRemove(id, out _);
            throw;
        }

        _counters.Add(PeerCounter.QueriesSent);
        query = entry;
        return SendOutcome.Sent;
    }

    private void ReceiveLoop(Socket socket)
    {
        // One byte more than the largest message: the kernel truncates a longer datagram to the buffer, and the
        // codec then sees it as too long rather than as a shorter, plausible one.
        byte[] buffer = new byte[PeerMessageCodec.MaxLength + 1];
        var source = new SocketAddress(socket.AddressFamily);
        while (!_disposing.IsCancellationRequested)
        {
            int length;
            try
            {
                length = socket.ReceiveFrom(buffer, SocketFlags.None, source);
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (SocketException) when (_disposing.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException)
            {
                _counters.Add(PeerCounter.ReceiveErrors);
                Thread.Sleep(10); // a persistent error must not spin a core
                continue;
            }

            _counters.Add(PeerCounter.DatagramsReceived);
            try
            {
                Handle(socket, buffer.AsSpan(0, length), source);
            }
            catch (Exception) when (_disposing.IsCancellationRequested)
            {
                return;
            }
            catch (Exception)
            {
                // A bug, not the input's fault (the codec reports bad input as a status); the other peers still
                // need answers, so the thread lives on and the operator sees the count.
                _counters.Add(PeerCounter.Faults);
            }
        }
    }

    private void Handle(Socket socket, ReadOnlySpan<byte> datagram, SocketAddress source)
    {
        if (!AddressBits.TrySourceKey(source, out UInt128 sourceKey))
        {
            _counters.Reject(PeerMessageStatus.WrongSource);
            return;
        }

        PeerMessageStatus status = _directory.Open(datagram, sourceKey, out PeerMessage message, out PeerState? peer);
        if (status != PeerMessageStatus.Ok)
        {
            _counters.Reject(status);
            return;
        }

        if (message.Type == PeerMessageType.Query)
        {
            Answer(socket, peer!, message, source);
        }
        else
        {
            Complete(peer!, message);
        }
    }

    private void Answer(Socket socket, PeerState peer, in PeerMessage query, SocketAddress source)
    {
        // Counted after the MAC: a forger cannot spend a peer's budget and starve its genuine queries.
        if (!peer.InboundQueries.TryAcquire())
        {
            _counters.Add(PeerCounter.InboundRateLimited);
            return;
        }

        _counters.Add(PeerCounter.QueriesReceived);
        bool owned;
        try
        {
            owned = _isOwned(query.Flow.ToTcpFlow());
        }
        catch (Exception)
        {
            // The handler is the owner's code; its failure is this query's, not the channel's.
            _counters.Add(PeerCounter.HandlerFailures);
            return;
        }

        var answer = new PeerMessage(
            PeerMessageType.Answer, peer.NextSequence(), query.QueryId, query.Flow, owned ? PeerVerdict.Owned : PeerVerdict.NotOwned);
        Span<byte> datagram = stackalloc byte[PeerMessageCodec.MaxLength];
        int length = PeerMessageCodec.Encode(datagram, _directory.LocalNameBytes, answer, peer.Key);
        try
        {
            socket.SendTo(datagram[..length], SocketFlags.None, source);
            _counters.Add(PeerCounter.AnswersSent);
        }
        catch (SocketException)
        {
            _counters.Add(PeerCounter.AnswerSendFailures);
        }
    }

    private void Complete(PeerState peer, in PeerMessage answer)
    {
        if (_pending.TryGetValue(answer.QueryId, out PendingQuery? query)
            && query.Peer == peer
            && query.Flow == answer.Flow
            && query.Completion.TrySetResult(answer.Verdict))
        {
            _counters.Add(answer.Verdict == PeerVerdict.Owned ? PeerCounter.AnswersOwned : PeerCounter.AnswersNotOwned);
        }
        else
        {
            _counters.Add(PeerCounter.AnswersUnmatched);
        }
    }

    private enum SendOutcome
    {
        Sent,
        RateLimited,
        SendFailed,
    }

    /// <summary>A query sent and not yet answered: the answer must come from this peer, about this flow.</summary>
    private sealed class PendingQuery(PeerState peer, WireFlow flow)
    {
        public PeerState Peer { get; } = peer;

        public WireFlow Flow { get; } = flow;

        public uint Id { get; set; }

        // Asynchronous continuations: the receive thread completes this and must not run the caller's code.
        public TaskCompletionSource<PeerVerdict> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}

/// <summary>A lookup socket could not be bound: says to which address and port, for the caller to name the settings.</summary>
internal sealed class PeerChannelBindException(IPEndPoint endPoint, SocketException inner)
    : Exception($"cannot bind the lookup socket to {endPoint}: {inner.Message}", inner)
{
    public IPEndPoint EndPoint { get; } = endPoint;

    public SocketError SocketError => ((SocketException)InnerException!).SocketErrorCode;
}
