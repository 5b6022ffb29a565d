using System.Net;
using Microsoft.Extensions.Logging;
using MptcpAnycast.Kestrel.Connections;
using MptcpAnycast.Kestrel.Control;
using MptcpAnycast.Kestrel.Diagnostics;
using MptcpAnycast.PathManagement;
using Polly.CircuitBreaker;

namespace MptcpAnycast.Kestrel.Announcing;

/// <summary>
/// Decides, for each accepted connection, whether and what to announce, and announces it: at once, after
/// <see cref="MptcpAnycastSettings.AnnounceDelay"/>, or when the application asks. Runs on the control loop only.
/// </summary>
internal sealed class UnicastAnnouncer
{
    private readonly MptcpAnycastSettings _settings;
    private readonly AnnouncementMode _mode;
    private readonly UnicastAnnouncementPolicy _policy;
    private readonly IPathManager? _pathManager;
    private readonly string _unavailableReason;
    private readonly ConnectionRegistry _registry;
    private readonly JoinTracker _joins;
    private readonly ControlPlanePipeline _pipeline;
    private readonly AnnouncementRateLimiter _rateLimiter;
    private readonly MptcpAnycastMetrics _metrics;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly Queue<(TrackedConnection Connection, DateTimeOffset Due)> _delayed = new(); // in due order: one delay for all

    /// <summary>A <paramref name="pathManager"/> of null means announcements cannot be made; <paramref name="unavailableReason"/> says why.</summary>
    public UnicastAnnouncer(MptcpAnycastSettings settings, AnnouncementMode mode, UnicastAnnouncementPolicy policy, IPathManager? pathManager,
        string unavailableReason, ConnectionRegistry registry, JoinTracker joins, ControlPlanePipeline pipeline, MptcpAnycastMetrics metrics,
        ILogger logger, TimeProvider time)
    {
        _settings = settings;
        _mode = mode;
        _policy = policy;
        _pathManager = pathManager;
        _unavailableReason = unavailableReason;
        _registry = registry;
        _joins = joins;
        _pipeline = pipeline;
        _metrics = metrics;
        _logger = logger;
        _time = time;
        _rateLimiter = new AnnouncementRateLimiter(settings.AnnouncementsPerClientPerMinute);
    }

    /// <summary>Userspace mode, announce on accept, with a delay: connections are announced once they have lasted it.</summary>
    public static bool IsDelaying(MptcpAnycastSettings settings, AnnouncementMode mode) =>
        mode == AnnouncementMode.Userspace && settings.AnnounceOn == AnnounceOn.Accept && settings.AnnounceDelay > TimeSpan.Zero;

    private bool Delaying => IsDelaying(_settings, _mode);

    /// <summary>A connection Kestrel accepted: counts it, decides, and tracks and announces it (or schedules that).</summary>
    public void OnAccepted(TrackedConnection connection)
    {
        try
        {
            Decide(connection);
        }
        finally
        {
            connection.MarkDecided();
        }
    }

    private void Decide(TrackedConnection connection)
    {
        _metrics.Connection(connection.FallbackReason);
        if (!connection.IsMptcp)
        {
            _metrics.Fallback(connection.FallbackReason);
            return;
        }

        if (_mode == AnnouncementMode.None || connection.Local is null)
        {
            connection.SetReason(_mode == AnnouncementMode.None ? "announcements are off (Mode = None, or no unicast address configured)" : "no local address");
            return;
        }

        AnnouncementDecision decision = _policy.Decide(connection.Local, connection.AddressFamily);
        connection.Decision = decision;
        connection.SetReason(decision.Describe());
        if (!decision.ShouldAnnounce)
        {
            _metrics.Announcement("skipped");
            return;
        }

        // A delayed announcement takes its budget when it is due: a connection that ends sooner uses none.
        if (_mode == AnnouncementMode.Userspace && _settings.AnnounceOn == AnnounceOn.Accept && !Delaying && !TryAcquireBudget(connection))
        {
            return;
        }

        _registry.Add(connection);
        if (_mode == AnnouncementMode.Kernel)
        {
            DateTimeOffset now = _time.GetUtcNow();
            connection.TryStartAnnouncement(now);
            connection.MarkAnnounced(decision.UnicastEndPoint!, now, "announced by the kernel path manager (signal endpoint)");
            _metrics.Announcement("sent");

            // The kernel announces as soon as the connection is fully established, before it is tracked here: a join
            // reported before then was not heard. Look at the socket once, now that it is tracked.
            if (connection.GetConnectionInfo().AdditionalSubflows > 0)
            {
                _joins.CheckSocket(connection);
            }
        }
        else if (Delaying)
        {
            connection.SetReason($"announcement due {_settings.AnnounceDelay.TotalMilliseconds:0.###} ms after accept (AnnounceDelay)");
            _delayed.Enqueue((connection, connection.AcceptedAt + _settings.AnnounceDelay));
        }
        else if (_settings.AnnounceOn == AnnounceOn.Accept)
        {
            Announce(connection);
        }
        else
        {
            connection.SetReason("announcement on demand: the application has not asked for it");
        }
    }

    /// <summary>The application asked (<see cref="AnnounceOn.Demand"/>, or any time in Userspace mode); returns whether the address is announced.</summary>
    public bool AnnounceOnDemand(TrackedConnection connection)
    {
        if (connection.AnnouncedEndPoint is not null)
        {
            return true;
        }

        // Kernel mode marks its connections announced at accept, so they returned above.
        if (!connection.IsMptcp || !connection.Decision.ShouldAnnounce || _mode != AnnouncementMode.Userspace || connection.IsClosed
            || (connection.AnnounceStartedAt is null && !TryAcquireBudget(connection)))
        {
            return false;
        }

        _registry.Add(connection); // not yet tracked when the accept-time budget check turned it down
        Announce(connection);
        return connection.AnnouncedEndPoint is not null;
    }

    /// <summary>
    /// Announces the connections whose delay has passed, in accept order; those closed meanwhile are dropped without a
    /// command. Also prunes the per-client budget.
    /// </summary>
    public void AnnounceDue(DateTimeOffset now)
    {
        while (_delayed.TryPeek(out (TrackedConnection Connection, DateTimeOffset Due) head) && head.Due <= now)
        {
            _delayed.Dequeue();
            if (head.Connection.IsClosed)
            {
                _metrics.Announcement("closed_before_delay");
            }
            else if (TryAcquireBudget(head.Connection))
            {
                Announce(head.Connection);
            }
        }
    }

    /// <summary>Forgets per-client budgets whose minute is over.</summary>
    public void Prune(DateTimeOffset now) => _rateLimiter.Prune(now);

    private bool TryAcquireBudget(TrackedConnection connection)
    {
        if (!_rateLimiter.IsEnabled || connection.Remote is null || _rateLimiter.TryAcquire(connection.Remote.Address, _time.GetUtcNow()))
        {
            return true;
        }

        connection.SetReason($"not announced: this client already got {_settings.AnnouncementsPerClientPerMinute} announcement(s) this minute (AnnouncementsPerClientPerMinute)");
        _metrics.Announcement("rate_limited");
        return false;
    }

    private void Announce(TrackedConnection connection)
    {
        if (!connection.TryStartAnnouncement(_time.GetUtcNow()))
        {
            return;
        }

        IPEndPoint target = connection.Decision.UnicastEndPoint!;
        if (_pathManager is null)
        {
            connection.MarkFailed(_unavailableReason);
            _metrics.Announcement("failed");
            return;
        }

        try
        {
            _pipeline.Execute(static s => s.PathManager.Announce(s.Token, s.AddressId, s.Wire),
                (PathManager: _pathManager, connection.Token, connection.Decision.AddressId, Wire: connection.Decision.WireEndPoint ?? target));
            connection.MarkAnnounced(target, _time.GetUtcNow(), "announced; waiting for the client's subflow to the unicast address");
            _metrics.Announcement("sent");
            MptcpAnycastLog.Announced(_logger, connection.ConnectionId, target, connection.Token);
            if (!_joins.IsFollowingEvents)
            {
                _joins.CheckSocket(connection);
            }
        }
        catch (BrokenCircuitException)
        {
            connection.MarkFailed("the path manager is unavailable (announcements paused); the connection works single-path");
            _metrics.Announcement("failed");
        }
        catch (ObjectDisposedException)
        {
            connection.MarkFailed("the transport is stopping");
            _metrics.Announcement("failed");
        }
        catch (PathManagerException ex)
        {
            bool closedMeanwhile = connection.IsClosed || ex.Kind == PathManagerErrorKind.Refused;
            connection.MarkFailed(closedMeanwhile
                ? $"the connection was gone before the announcement: {ex.Message}"
                : $"announcing {target} failed: {ex.Message}; the connection works single-path");
            _metrics.Announcement("failed");
            if (!closedMeanwhile)
            {
                MptcpAnycastLog.AnnounceFailed(_logger, connection.ConnectionId, target, ex);
            }
        }
    }
}
