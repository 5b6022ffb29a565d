using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Kestrel.Announcing;

namespace MptcpAnycast.Kestrel.Connections;

/// <summary>
/// One accepted connection as the control path tracks it: the facts of the accepted socket (read once, at accept) and
/// where its unicast subflow stands. Transitions are idempotent and may come from any thread (the control loop, the
/// event thread, an application reading its feature); each returns whether it happened, so exactly one caller acts on it.
/// </summary>
internal sealed class TrackedConnection
{
    private readonly Lock _gate = new();
    private UnicastSubflowState _state;
    private AnnouncementDecision _decision;
    private string _reason;
    private int _announceStarted;
    private int _afterJoinStarted;
    private volatile bool _decided;
    private Socket? _socket;

    /// <param name="socket">The accepted socket.</param>
    /// <param name="info">Its MPTCP state at accept (<c>MPTCP_INFO</c>).</param>
    /// <param name="connectionId">Kestrel's connection id, as in its own logs.</param>
    /// <param name="local">The server side of the initial (anycast) subflow.</param>
    /// <param name="remote">The client side of the initial subflow.</param>
    /// <param name="acceptedAt">When it was accepted.</param>
    public TrackedConnection(Socket socket, MptcpConnectionInfo info, string connectionId, IPEndPoint? local, IPEndPoint? remote, DateTimeOffset acceptedAt)
    {
        _socket = socket;
        AddressFamily = socket.AddressFamily;
        FallbackReason = info.FallbackReason;
        Token = info.Token;
        ConnectionId = connectionId;
        Local = local?.Unmapped();
        Remote = remote?.Unmapped();
        AcceptedAt = acceptedAt;
        _decided = !info.IsMptcp; // plain TCP: nothing to decide
        _reason = info.IsMptcp
            ? "queued on the transport's control path, which has not looked at it yet"
            : info.FallbackReason == MptcpFallbackReason.PlainTcpSocket
                ? "plain TCP: the client did not offer MPTCP (or a middlebox removed the option)"
                : "the connection fell back to TCP during the handshake (MP_CAPABLE not echoed)";
    }

    /// <summary>The accepted socket; null once Kestrel reported the connection closed, so that a closed connection kept
    /// for its join does not keep the socket's objects alive.</summary>
    public Socket? Socket => Volatile.Read(ref _socket);

    /// <summary>The accepted socket's address family (IPv6 for a dual-stack listener).</summary>
    public AddressFamily AddressFamily { get; }

    public string ConnectionId { get; }

    /// <summary>The server side of the initial (anycast) subflow, IPv4-mapped addresses as IPv4.</summary>
    public IPEndPoint? Local { get; }

    /// <summary>The client side of the initial subflow, IPv4-mapped addresses as IPv4.</summary>
    public IPEndPoint? Remote { get; }

    /// <summary>The socket's MPTCP state at accept (<c>MPTCP_INFO</c>).</summary>
    /// <summary>Why the connection is not MPTCP (read at accept), or <see cref="MptcpFallbackReason.None"/>.</summary>
    public MptcpFallbackReason FallbackReason { get; }

    public bool IsMptcp => FallbackReason == MptcpFallbackReason.None;

    /// <summary>The connection's MPTCP token (read at accept); 0 for plain TCP.</summary>
    public uint Token { get; }

    public DateTimeOffset AcceptedAt { get; }

    /// <summary>What the policy decided for this connection; set by the control loop before anything is announced.</summary>
    public AnnouncementDecision Decision
    {
        get
        {
            lock (_gate)
            {
                return _decision;
            }
        }

        set
        {
            lock (_gate)
            {
                _decision = value;
            }
        }
    }

    /// <summary>The control loop has looked at the connection: what it decided (announce, schedule, skip) is in the state.</summary>
    public bool IsDecided => _decided;

    public void MarkDecided() => _decided = true;

    public IPEndPoint? AnnouncedEndPoint { get; private set; }

    /// <summary>When the announcement was sent to the path manager (the join can be seen before its reply).</summary>
    public DateTimeOffset? AnnounceStartedAt { get; private set; }

    public DateTimeOffset? AnnouncedAt { get; private set; }

    public DateTimeOffset? JoinedAt { get; private set; }

    /// <summary>Kestrel reported the connection closed: no more path-manager commands for it.</summary>
    public bool IsClosed { get; private set; }

    public UnicastSubflowState State
    {
        get
        {
            lock (_gate)
            {
                return _state;
            }
        }
    }

    public string StateReason
    {
        get
        {
            lock (_gate)
            {
                return _reason;
            }
        }
    }

    /// <summary>The current subflows, IPv4-mapped addresses as IPv4; empty once the socket is closed.</summary>
    public IReadOnlyList<MptcpSubflow> GetSubflows()
    {
        Socket? socket = Socket;
        if (socket is null)
        {
            return [];
        }

        try
        {
            MptcpSubflow[] subflows = MptcpSocket.GetSubflows(socket);
            for (int i = 0; i < subflows.Length; i++)
            {
                subflows[i] = new MptcpSubflow(subflows[i].Local.Unmapped(), subflows[i].Remote.Unmapped());
            }

            return subflows;
        }
        catch (ObjectDisposedException)
        {
            return [];
        }
    }

    /// <summary>The MPTCP counters now; the default once the socket is closed.</summary>
    public MptcpConnectionInfo GetConnectionInfo()
    {
        Socket? socket = Socket;
        if (socket is null)
        {
            return default;
        }

        try
        {
            return MptcpSocket.GetConnectionInfo(socket);
        }
        catch (ObjectDisposedException)
        {
            return default;
        }
    }

    /// <summary>True for the first caller only: one announcement per connection.</summary>
    public bool TryStartAnnouncement(DateTimeOffset now)
    {
        if (Interlocked.Exchange(ref _announceStarted, 1) != 0)
        {
            return false;
        }

        lock (_gate)
        {
            AnnounceStartedAt = now;
        }

        return true;
    }

    public bool TryStartAfterJoin() => Interlocked.Exchange(ref _afterJoinStarted, 1) == 0;

    public void MarkAnnounced(IPEndPoint endPoint, DateTimeOffset at, string reason)
    {
        lock (_gate)
        {
            AnnouncedEndPoint = endPoint;
            AnnouncedAt = at;
            AnnounceStartedAt ??= at;
            if (_state is UnicastSubflowState.NotAnnounced or UnicastSubflowState.Failed)
            {
                _state = UnicastSubflowState.Announced;
                _reason = reason;
            }
        }
    }

    /// <summary>
    /// Moves to Joined unless already there; returns the latency from the announcement when it moved. A join reported
    /// after the close still counts: the client joined while the connection was open.
    /// </summary>
    public bool TryMarkJoined(DateTimeOffset at, out TimeSpan latency)
    {
        lock (_gate)
        {
            latency = default;
            if (_state == UnicastSubflowState.Joined || AnnounceStartedAt is not DateTimeOffset started)
            {
                return false;
            }

            _state = UnicastSubflowState.Joined;
            _reason = "the client opened a subflow to the unicast address";
            JoinedAt = at;
            latency = at - started;
            return true;
        }
    }

    /// <summary>Announced, and the join timeout has passed: the next sweep gives up on it unless a join is found.</summary>
    public bool IsJoinOverdue(DateTimeOffset now, TimeSpan timeout)
    {
        lock (_gate)
        {
            return _state == UnicastSubflowState.Announced && AnnouncedAt is DateTimeOffset at && now - at >= timeout;
        }
    }

    public bool TryMarkJoinTimedOut(DateTimeOffset now, TimeSpan timeout)
    {
        lock (_gate)
        {
            if (_state != UnicastSubflowState.Announced || AnnouncedAt is not DateTimeOffset at || now - at < timeout || IsClosed)
            {
                return false;
            }

            _state = UnicastSubflowState.JoinTimedOut;
            _reason = $"the client did not open a subflow to {AnnouncedEndPoint} within {timeout.TotalSeconds:0.###} s "
                + "(no MPTCP limits for ADD_ADDR, a firewall, or a middlebox); the connection works single-path";
            return true;
        }
    }

    public void MarkFailed(string reason)
    {
        lock (_gate)
        {
            if (_state != UnicastSubflowState.Joined)
            {
                _state = UnicastSubflowState.Failed;
                _reason = reason;
            }
        }
    }

    public void SetReason(string reason)
    {
        lock (_gate)
        {
            _reason = reason;
        }
    }

    /// <summary>Marks the connection closed; returns whether a join to the announced address was still awaited.</summary>
    public bool MarkClosed()
    {
        lock (_gate)
        {
            IsClosed = true;
            Volatile.Write(ref _socket, null);
            return _state == UnicastSubflowState.Announced;
        }
    }
}
