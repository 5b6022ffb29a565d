using System.Net;
using Microsoft.Extensions.Logging;
using MptcpAnycast.Kestrel.Control;
using MptcpAnycast.Kestrel.Diagnostics;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Kestrel.Connections;

/// <summary>
/// Learns when clients join the announced unicast address: from the kernel's subflow events while they come, from the
/// sockets when events were lost or cannot be had, and from the socket again when the application asks. Gives up on a
/// join after the join timeout. Counts anycast subflows lost while the unicast one carried on.
/// </summary>
/// <remarks>
/// <see cref="OnEvent"/> runs on the path-manager client's event thread and never blocks: it looks the token up, marks
/// the join and posts what needs the path manager (after-join commands, reconciliation) to the control loop.
/// </remarks>
internal sealed class JoinTracker : IPathManagerEventHandler
{
    private readonly MptcpAnycastSettings _settings;
    private readonly ConnectionRegistry _registry;
    private readonly MptcpAnycastMetrics _metrics;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly Func<TrackedConnection, IReadOnlyList<MptcpSubflow>> _readSubflows;
    private readonly Action<ControlWork> _post;
    private readonly bool _hasAfterJoinCommands;
    private volatile bool _followingEvents;

    /// <summary><paramref name="hasAfterJoinCommands"/>: whether a join is followed by a command on the anycast subflow (the after-join policy in Userspace mode).</summary>
    public JoinTracker(MptcpAnycastSettings settings, ConnectionRegistry registry, bool hasAfterJoinCommands, MptcpAnycastMetrics metrics,
        ILogger logger, TimeProvider time, Func<TrackedConnection, IReadOnlyList<MptcpSubflow>> readSubflows, Action<ControlWork> post)
    {
        _settings = settings;
        _registry = registry;
        _hasAfterJoinCommands = hasAfterJoinCommands;
        _metrics = metrics;
        _logger = logger;
        _time = time;
        _readSubflows = readSubflows;
        _post = post;
    }

    /// <summary>True while joins are learnt from path-manager events; false while the sweeper reads them from the sockets.</summary>
    public bool IsFollowingEvents
    {
        get => _followingEvents;
        set => _followingEvents = value;
    }

    public void OnEvent(PathManagerEvent e)
    {
        switch (e.Type)
        {
            case PathManagerEventType.SubflowEstablished when e.Source is IPEndPoint local && _registry.TryGet(e.Token, out TrackedConnection? connection):
                // Compare with the decision, not AnnouncedEndPoint: the join can be reported before the ANNOUNCE reply.
                if (connection.Decision.UnicastEndPoint is IPEndPoint target && local.Address.SameAddressAs(target.Address))
                {
                    OnJoined(connection);
                }

                break;
            case PathManagerEventType.SubflowClosed when e.Source is IPEndPoint local && _registry.TryGet(e.Token, out TrackedConnection? connection):
                if (connection.State == UnicastSubflowState.Joined && connection.Local is IPEndPoint anycast
                    && local.Port == anycast.Port && local.Address.SameAddressAs(anycast.Address)
                    && _settings.AfterJoin != AfterJoinPolicy.MigrateToUnicast)
                {
                    _metrics.RouteChangeSurvived();
                }

                break;
            case PathManagerEventType.EventsLost:
                _post(new ControlWork(ControlWorkKind.Reconcile));
                break;
        }
    }

    public void OnCompleted(PathManagerException? error)
    {
        if (error is not null)
        {
            _post(new ControlWork(ControlWorkKind.EventsEnded, State: error.Message));
        }
    }

    /// <summary>
    /// Looks at the socket for the client's subflow to the announced address, for a connection still waiting for it.
    /// Cheap (one getsockopt); safe from any thread.
    /// </summary>
    public void CheckSocket(TrackedConnection connection)
    {
        if (connection.Decision.UnicastEndPoint is not IPEndPoint announced || connection.AnnounceStartedAt is null
            || connection.State == UnicastSubflowState.Joined || connection.IsClosed)
        {
            return;
        }

        foreach (MptcpSubflow subflow in _readSubflows(connection))
        {
            if (subflow.Local.Address.SameAddressAs(announced.Address))
            {
                OnJoined(connection);
                return;
            }
        }
    }

    /// <summary>After lost events: reads every tracked connection's subflows from its socket. Returns how many it looked at.</summary>
    public int Reconcile()
    {
        int count = 0;
        foreach (TrackedConnection connection in _registry.All)
        {
            count++;
            CheckSocket(connection);
        }

        MptcpAnycastLog.EventsLost(_logger, count);
        return count;
    }

    /// <summary>
    /// Kestrel closed the connection. One still waiting for its join stays tracked until its join timeout, so that a
    /// join the kernel reports after the close (the client joined while it was open) still counts.
    /// </summary>
    public void OnClosed(TrackedConnection connection)
    {
        if (!connection.MarkClosed())
        {
            _registry.Remove(connection);
        }
    }

    /// <summary>
    /// Marks joins that did not come within the join timeout, reading joins from the sockets where events do not tell
    /// (and once more before giving up, in case the join event was among those the kernel dropped without telling),
    /// and forgets closed connections whose join can no longer be reported.
    /// </summary>
    public void Sweep(DateTimeOffset now)
    {
        TimeSpan timeout = _settings.JoinTimeout;
        foreach (TrackedConnection connection in _registry.All)
        {
            bool overdue = connection.IsJoinOverdue(now, timeout);
            if (connection.IsClosed)
            {
                if (overdue || connection.State != UnicastSubflowState.Announced)
                {
                    _registry.Remove(connection);
                }

                continue;
            }

            if (connection.State != UnicastSubflowState.Announced)
            {
                continue;
            }

            if (!_followingEvents || overdue)
            {
                CheckSocket(connection);
            }

            if (connection.TryMarkJoinTimedOut(now, timeout))
            {
                _metrics.JoinTimedOut();
                MptcpAnycastLog.JoinTimedOut(_logger, connection.ConnectionId, connection.AnnouncedEndPoint!, timeout);
            }
        }
    }

    private void OnJoined(TrackedConnection connection)
    {
        if (!connection.TryMarkJoined(_time.GetUtcNow(), out TimeSpan latency))
        {
            return;
        }

        _metrics.Joined(latency);
        MptcpAnycastLog.Joined(_logger, connection.ConnectionId, connection.Decision.UnicastEndPoint!, latency.TotalMilliseconds);
        if (_hasAfterJoinCommands && !connection.IsClosed && connection.TryStartAfterJoin())
        {
            _post(new ControlWork(ControlWorkKind.AfterJoin, connection));
        }
    }
}
