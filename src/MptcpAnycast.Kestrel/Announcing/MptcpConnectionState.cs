using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Announcement;

namespace MptcpAnycast.Kestrel.Announcing;

/// <summary>One accepted connection as the announcer tracks it; also its <see cref="IMptcpConnectionFeature"/>.</summary>
internal sealed class MptcpConnectionState : IMptcpConnectionFeature
{
    private readonly UnicastAnnouncer _announcer;
    private readonly object _gate = new();
    private UnicastSubflowState _state;
    private string _reason;
    private int _announceStarted;
    private int _afterJoinApplied;

    public MptcpConnectionState(UnicastAnnouncer announcer, Socket socket, string connectionId, in MptcpConnectionInfo info,
        IPEndPoint? local, IPEndPoint? remote, AnnouncementDecision decision, DateTimeOffset acceptedAt, string reason)
    {
        _announcer = announcer;
        Socket = socket;
        ConnectionId = connectionId;
        IsMptcp = info.IsMptcp;
        FallbackReason = info.FallbackReason;
        Token = info.Token;
        Local = local;
        Remote = remote;
        Decision = decision;
        AcceptedAt = acceptedAt;
        _reason = reason;
    }

    public Socket Socket { get; }

    public UnicastAnnouncer Announcer => _announcer;

    public string ConnectionId { get; }

    /// <summary>The server side of the initial (anycast) subflow.</summary>
    public IPEndPoint? Local { get; }

    /// <summary>The client side of the initial subflow.</summary>
    public IPEndPoint? Remote { get; }

    public AnnouncementDecision Decision { get; }

    public bool IsMptcp { get; }

    public MptcpFallbackReason FallbackReason { get; }

    public uint Token { get; }

    public IPEndPoint? AnnouncedEndPoint { get; private set; }

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

    public DateTimeOffset AcceptedAt { get; }

    public DateTimeOffset? AnnouncedAt { get; private set; }

    public DateTimeOffset? JoinedAt { get; private set; }

    /// <summary>Closed: no more state changes, no more path-manager commands.</summary>
    public bool IsClosed { get; private set; }

    public IReadOnlyList<MptcpSubflow> GetSubflows()
    {
        try
        {
            MptcpSubflow[] subflows = MptcpSocket.GetSubflows(Socket);
            for (int i = 0; i < subflows.Length; i++)
            {
                // A dual-mode socket reports IPv4 subflows as ::ffff:a.b.c.d; show them as IPv4.
                if (subflows[i].Local.Address.IsIPv4MappedToIPv6 || subflows[i].Remote.Address.IsIPv4MappedToIPv6)
                {
                    subflows[i] = new MptcpSubflow(Unmap(subflows[i].Local), Unmap(subflows[i].Remote));
                }
            }

            return subflows;
        }
        catch (ObjectDisposedException)
        {
            return [];
        }
    }

    private static IPEndPoint Unmap(IPEndPoint e) => e.Address.IsIPv4MappedToIPv6 ? new IPEndPoint(e.Address.MapToIPv4(), e.Port) : e;

    public MptcpConnectionInfo GetConnectionInfo()
    {
        try
        {
            return MptcpSocket.GetConnectionInfo(Socket);
        }
        catch (ObjectDisposedException)
        {
            return default;
        }
    }

    public ValueTask<bool> AnnounceAsync(CancellationToken cancellationToken = default) => _announcer.AnnounceAsync(this, cancellationToken);

    /// <summary>When the announcement was sent to the path manager (the join can be seen before its reply).</summary>
    public DateTimeOffset? AnnounceStartedAt { get; private set; }

    /// <summary>True for the first caller only: one announcement per connection.</summary>
    public bool TryStartAnnouncement(DateTimeOffset now)
    {
        if (Interlocked.Exchange(ref _announceStarted, 1) != 0)
        {
            return false;
        }

        AnnounceStartedAt = now;
        return true;
    }

    public bool TryStartAfterJoin() => Interlocked.Exchange(ref _afterJoinApplied, 1) == 0;

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

    /// <summary>Moves to Joined unless already there; returns the latency from the announcement when it moved.</summary>
    public bool TryMarkJoined(DateTimeOffset at, out TimeSpan latency)
    {
        lock (_gate)
        {
            latency = default;
            if (_state == UnicastSubflowState.Joined || IsClosed)
            {
                return false;
            }

            _state = UnicastSubflowState.Joined;
            _reason = "the client opened a subflow to the unicast address";
            JoinedAt = at;
            latency = AnnounceStartedAt is DateTimeOffset started ? at - started : TimeSpan.Zero;
            return true;
        }
    }

    /// <summary>Announced, and the join timeout has passed: the next sweep marks it timed out unless a join is found.</summary>
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
            if (_state != UnicastSubflowState.Announced || AnnouncedAt is not DateTimeOffset at || now - at < timeout)
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

    public void MarkClosed()
    {
        lock (_gate)
        {
            IsClosed = true;
        }
    }
}
