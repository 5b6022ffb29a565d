using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using MptcpAnycast.Announcement;
using MptcpAnycast.Kestrel.Diagnostics;
using MptcpAnycast.Kestrel.Internal;
using Polly;
using Polly.CircuitBreaker;
using Polly.Retry;
using Polly.Timeout;

namespace MptcpAnycast.Kestrel.Announcing;

/// <summary>
/// Announces the unicast address on this transport's own connections and follows their joins. Knows only the
/// tokens of connections it accepted: other processes' MPTCP connections in the namespace are never touched.
/// Never blocks the accept path: announcements run after the connection has been handed to Kestrel.
/// </summary>
internal sealed class UnicastAnnouncer : IAsyncDisposable
{
    /// <summary>After the event stream broke: the first try to subscribe again, then twice as long each time up to the cap.</summary>
    internal static readonly TimeSpan FirstResubscribeDelay = TimeSpan.FromMilliseconds(100);
    internal static readonly TimeSpan MaxResubscribeDelay = TimeSpan.FromSeconds(5);

    private readonly MptcpAnycastSettings _settings;
    private readonly AnnouncementMode _mode;
    private readonly UnicastAnnouncementPolicy _policy;
    private readonly IPathManager? _pathManager;
    private readonly ILogger _logger;
    private readonly MptcpAnycastMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<uint, MptcpConnectionState> _byToken = new();
    private readonly ResiliencePipeline _pipeline;
    private readonly AnnouncementRateLimiter _rateLimiter;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task _eventLoop;
    private readonly Task _sweeper;
    private readonly ConcurrentQueue<(MptcpConnectionState State, DateTimeOffset Due)> _delayed = new(); // in due order: one delay for all
    private readonly Task _delayedAnnouncements;
    private volatile bool _followingEvents;
    private readonly string _unavailableReason;

    public UnicastAnnouncer(MptcpAnycastSettings settings, AnnouncementMode mode, IPathManager? pathManager, string? unavailableReason,
        ILogger logger, MptcpAnycastMetrics metrics, TimeProvider time)
    {
        _settings = settings;
        _mode = mode;
        _policy = settings.CreatePolicy();
        _pathManager = pathManager;
        _unavailableReason = unavailableReason ?? "the path manager is not available";
        _logger = logger;
        _metrics = metrics;
        _time = time;
        _pipeline = BuildPipeline();
        _rateLimiter = new AnnouncementRateLimiter(settings.AnnouncementsPerClientPerMinute);
        _followingEvents = pathManager?.Events is not null;
        _metrics.ObserveTrackedConnections(() => TrackedConnections);
        _eventLoop = _followingEvents ? Task.Run(FollowEventsAsync) : Task.CompletedTask;
        _sweeper = mode is AnnouncementMode.Userspace or AnnouncementMode.Kernel ? Task.Run(SweepAsync) : Task.CompletedTask;
        _delayedAnnouncements = IsDelayingAnnouncements ? Task.Run(AnnounceWhenDueAsync) : Task.CompletedTask;
    }

    private bool IsDelayingAnnouncements =>
        _mode == AnnouncementMode.Userspace && _settings.AnnounceOn == AnnounceOn.Accept && _settings.AnnounceDelay > TimeSpan.Zero;

    /// <summary>How long announcements pause once the path manager is found failing for everyone (tests shorten it).</summary>
    internal static TimeSpan CircuitBreakDuration { get; set; } = TimeSpan.FromSeconds(15);

    public AnnouncementMode Mode => _mode;

    public UnicastAnnouncementPolicy Policy => _policy;

    /// <summary>Connections tracked now (MPTCP ones whose state can still change).</summary>
    public int TrackedConnections => _byToken.Count;

    /// <summary>True while joins are learnt from path-manager events; false while the sweeper reads them from the sockets.</summary>
    internal bool IsFollowingEvents => _followingEvents;

    /// <summary>
    /// Reads a connection's subflows from its socket. Unit tests replace it to stand in for a client's join, which
    /// loopback in the test's own namespace cannot make.
    /// </summary>
    internal Func<MptcpConnectionState, IReadOnlyList<MptcpSubflow>> SubflowReader { get; set; } = static state => state.GetSubflows();

    /// <summary>Reads the accepted socket's state and starts its announcement. Cheap: one getsockopt, no I/O wait.</summary>
    public MptcpConnectionState OnAccepted(Socket socket, string connectionId)
    {
        MptcpConnectionInfo info = MptcpSocket.GetConnectionInfo(socket);
        DateTimeOffset now = _time.GetUtcNow();
        var local = socket.LocalEndPoint as IPEndPoint;
        var remote = socket.RemoteEndPoint as IPEndPoint;
        _metrics.Connection(info.IsMptcp);

        if (!info.IsMptcp)
        {
            _metrics.Fallback(info.FallbackReason);
            string why = info.FallbackReason == MptcpFallbackReason.PlainTcpSocket
                ? "plain TCP: the client did not offer MPTCP (or a middlebox removed the option)"
                : "the connection fell back to TCP during the handshake (MP_CAPABLE not echoed)";
            return new MptcpConnectionState(this, socket, connectionId, info, local, remote, default, now, why);
        }

        if (_mode == AnnouncementMode.None || local is null)
        {
            return new MptcpConnectionState(this, socket, connectionId, info, local, remote, default, now,
                _mode == AnnouncementMode.None ? "announcements are off (Mode = None, or no unicast address configured)" : "no local address");
        }

        AnnouncementDecision decision = _policy.Decide(local, socket.AddressFamily);
        var state = new MptcpConnectionState(this, socket, connectionId, info, local, remote, decision, now, decision.Describe());
        if (!decision.ShouldAnnounce)
        {
            _metrics.Announcement("skipped");
            return state;
        }

        // A delayed announcement takes its budget when it is due: a connection that ends sooner uses none.
        if (_mode == AnnouncementMode.Userspace && _settings.AnnounceOn == AnnounceOn.Accept && !IsDelayingAnnouncements && !TryAcquireBudget(state))
        {
            return state;
        }

        _byToken[info.Token] = state;
        if (_mode == AnnouncementMode.Kernel)
        {
            state.MarkAnnounced(decision.UnicastEndPoint!, now, "announced by the kernel path manager (signal endpoint)");
            _metrics.Announcement("sent");

            // The kernel announces as soon as the connection is fully established, which can be before this accept:
            // a join reported before the token was tracked would be missed. Look at the socket once, now that it is.
            if (MptcpSocket.GetConnectionInfo(socket).AdditionalSubflows > 0)
            {
                CheckJoinFromSocket(state);
            }
        }
        else if (IsDelayingAnnouncements)
        {
            state.SetReason($"announcement due {_settings.AnnounceDelay.TotalMilliseconds:0.###} ms after accept (AnnounceDelay)");
            _delayed.Enqueue((state, now + _settings.AnnounceDelay));
        }
        else if (_settings.AnnounceOn == AnnounceOn.Accept)
        {
            _ = AnnounceCoreAsync(state, _stopping.Token);
        }
        else
        {
            state.SetReason("announcement on demand: the application has not asked for it");
        }

        return state;
    }

    public void OnClosed(MptcpConnectionState state)
    {
        state.MarkClosed();
        if (state.Token != 0)
        {
            _byToken.TryRemove(new KeyValuePair<uint, MptcpConnectionState>(state.Token, state));
        }
    }

    public async ValueTask<bool> AnnounceAsync(MptcpConnectionState state, CancellationToken cancellationToken)
    {
        if (state.AnnouncedEndPoint is not null)
        {
            return true;
        }

        // (Kernel mode marks its connections announced at accept, so they returned above.)
        if (!state.IsMptcp || !state.Decision.ShouldAnnounce || _mode != AnnouncementMode.Userspace || state.IsClosed
            || (state.AnnounceStartedAt is null && !TryAcquireBudget(state)))
        {
            return false;
        }

        _byToken.TryAdd(state.Token, state); // not yet tracked when the accept-time budget check turned it down
        using CancellationTokenSource linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
        await AnnounceCoreAsync(state, linked.Token).ConfigureAwait(false);
        return state.AnnouncedEndPoint is not null;
    }

    private bool TryAcquireBudget(MptcpConnectionState state)
    {
        if (!_rateLimiter.IsEnabled || state.Remote is null || _rateLimiter.TryAcquire(state.Remote.Address, _time.GetUtcNow()))
        {
            return true;
        }

        state.SetReason($"not announced: this client already got {_settings.AnnouncementsPerClientPerMinute} announcement(s) this minute (AnnouncementsPerClientPerMinute)");
        _metrics.Announcement("rate_limited");
        return false;
    }

    private async Task AnnounceCoreAsync(MptcpConnectionState state, CancellationToken cancellationToken)
    {
        if (!state.TryStartAnnouncement(_time.GetUtcNow()))
        {
            return;
        }

        IPEndPoint target = state.Decision.UnicastEndPoint!;
        if (_pathManager is null)
        {
            state.MarkFailed(_unavailableReason);
            _metrics.Announcement("failed");
            return;
        }

        try
        {
            await _pipeline.ExecuteAsync(
                static async (s, ct) => await s.Manager.AnnounceAsync(s.State.Token, s.State.Decision.AddressId, s.Wire, ct).ConfigureAwait(false),
                (Manager: _pathManager, State: state, Wire: state.Decision.WireEndPoint ?? target),
                cancellationToken).ConfigureAwait(false);
            state.MarkAnnounced(target, _time.GetUtcNow(), "announced; waiting for the client's subflow to the unicast address");
            _metrics.Announcement("sent");
            MptcpAnycastLog.Announced(_logger, state.ConnectionId, target, state.Token);
            if (!_followingEvents)
            {
                CheckJoinFromSocket(state);
            }
        }
        catch (BrokenCircuitException)
        {
            state.MarkFailed("the path manager is unavailable (announcements paused); the connection works single-path");
            _metrics.Announcement("failed");
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            state.MarkFailed("the announcement was cancelled");
        }
        catch (Exception ex)
        {
            bool closedMeanwhile = state.IsClosed || _pathManager.Classify(ex) == PathManagerFailure.Connection;
            state.MarkFailed(closedMeanwhile
                ? $"the connection was gone before the announcement: {ex.Message}"
                : $"announcing {target} failed: {ex.Message}; the connection works single-path");
            _metrics.Announcement("failed");
            if (!closedMeanwhile)
            {
                MptcpAnycastLog.AnnounceFailed(_logger, state.ConnectionId, target, ex);
            }
        }
    }

    /// <summary>
    /// Follows the event stream until the announcer stops. When the stream breaks (the event socket failed) or ends
    /// unexpectedly: says so once, lets the sweeper read joins from the sockets, and subscribes again with backoff.
    /// </summary>
    private async Task FollowEventsAsync()
    {
        CancellationToken stopping = _stopping.Token;
        IAsyncEnumerable<PathEvent> events = _pathManager!.Events!;
        while (true)
        {
            string problem;
            try
            {
                await foreach (PathEvent e in events.WithCancellation(stopping).ConfigureAwait(false))
                {
                    OnEvent(e);
                }

                problem = "the path-manager event stream ended";
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                problem = "stopping";
            }
            catch (Exception ex)
            {
                problem = ex.Message;
            }

            _followingEvents = false;
            if (stopping.IsCancellationRequested)
            {
                return;
            }

            MptcpAnycastLog.EventsUnavailable(_logger, problem);
            if (await ResubscribeAsync(stopping).ConfigureAwait(false) is not { } resumed)
            {
                return;
            }

            events = resumed;
        }
    }

    /// <summary>
    /// Tries to subscribe again <see cref="FirstResubscribeDelay"/> after the failure, then twice as long between tries
    /// up to <see cref="MaxResubscribeDelay"/>, until it works (returns the new stream) or the announcer stops (null).
    /// Once it works, joins come as events again, and every tracked connection is read from its socket: whatever
    /// happened in the gap was not heard.
    /// </summary>
    private async Task<IAsyncEnumerable<PathEvent>?> ResubscribeAsync(CancellationToken stopping)
    {
        DateTimeOffset since = _time.GetUtcNow();
        TimeSpan delay = FirstResubscribeDelay;
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                await Task.Delay(delay, _time, stopping).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return null;
            }

            string? problem;
            IAsyncEnumerable<PathEvent>? events = null;
            try
            {
                if (_pathManager!.TryResubscribeEvents(out problem))
                {
                    events = _pathManager.Events;
                    problem ??= "no event stream after subscribing";
                }
            }
            catch (Exception ex)
            {
                problem = ex.Message;
            }

            if (events is not null)
            {
                _followingEvents = true; // joins from now on arrive as events...
                MptcpAnycastLog.EventsResumed(_logger, attempt, _time.GetUtcNow() - since);
                _metrics.EventsLost();
                Reconcile(); // ...and those made in the gap are read from the sockets
                return events;
            }

            delay = delay * 2 < MaxResubscribeDelay ? delay * 2 : MaxResubscribeDelay;
            MptcpAnycastLog.ResubscribeFailed(_logger, attempt, problem ?? "unknown", delay);
        }
    }

    internal void OnEvent(in PathEvent e)
    {
        switch (e.Kind)
        {
            case PathEventKind.SubflowEstablished when e.Local is not null && _byToken.TryGetValue(e.Token, out MptcpConnectionState? state):
                // Compare with the decision, not AnnouncedEndPoint: the join can be reported before the ANNOUNCE reply.
                if (state.Decision.UnicastEndPoint is IPEndPoint target && SameAddress(e.Local, target))
                {
                    OnJoined(state);
                }

                break;
            case PathEventKind.SubflowClosed when e.Local is not null && _byToken.TryGetValue(e.Token, out MptcpConnectionState? state):
                if (state.State == UnicastSubflowState.Joined && state.Local is not null && SameEndPoint(e.Local, state.Local)
                    && _settings.AfterJoin != AfterJoinPolicy.MigrateToUnicast)
                {
                    _metrics.RouteChangeSurvived();
                }

                break;
            case PathEventKind.Closed:
                if (_byToken.TryRemove(e.Token, out MptcpConnectionState? closed))
                {
                    closed.MarkClosed();
                }

                break;
            case PathEventKind.EventsLost:
                _metrics.EventsLost();
                Reconcile();
                break;
        }
    }

    /// <summary>After lost events: read every tracked connection's subflows from its socket.</summary>
    internal int Reconcile()
    {
        int count = 0;
        foreach (MptcpConnectionState state in _byToken.Values)
        {
            count++;
            CheckJoinFromSocket(state);
        }

        MptcpAnycastLog.EventsLost(_logger, count);
        return count;
    }

    private void CheckJoinFromSocket(MptcpConnectionState state)
    {
        if (state.Decision.UnicastEndPoint is not IPEndPoint announced || state.AnnounceStartedAt is null || state.State == UnicastSubflowState.Joined)
        {
            return;
        }

        foreach (MptcpSubflow subflow in SubflowReader(state))
        {
            if (SameAddress(subflow.Local, announced))
            {
                OnJoined(state);
                return;
            }
        }
    }

    private void OnJoined(MptcpConnectionState state)
    {
        if (!state.TryMarkJoined(_time.GetUtcNow(), out TimeSpan latency))
        {
            return;
        }

        _metrics.Joined(latency);
        MptcpAnycastLog.Joined(_logger, state.ConnectionId, state.Decision.UnicastEndPoint!, latency.TotalMilliseconds);
        // Per-connection subflow commands exist only in the userspace path manager.
        if (_settings.AfterJoin != AfterJoinPolicy.KeepBoth && _mode == AnnouncementMode.Userspace && _pathManager is not null && state.TryStartAfterJoin())
        {
            _ = ApplyAfterJoinAsync(state);
        }
    }

    private async Task ApplyAfterJoinAsync(MptcpConnectionState state)
    {
        if (state.Local is null || state.Remote is null)
        {
            return;
        }

        IPEndPoint local = Normalize(state.Local);
        IPEndPoint remote = Normalize(state.Remote);
        try
        {
            await _pipeline.ExecuteAsync(async ct =>
            {
                if (_settings.AfterJoin == AfterJoinPolicy.PreferUnicast)
                {
                    await _pathManager!.SetBackupAsync(state.Token, local, remote, backup: true, ct).ConfigureAwait(false);
                }
                else
                {
                    await _pathManager!.DestroySubflowAsync(state.Token, local, remote, ct).ConfigureAwait(false);
                }
            }, _stopping.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !_stopping.IsCancellationRequested)
        {
            MptcpAnycastLog.AfterJoinFailed(_logger, state.ConnectionId, _settings.AfterJoin, local, remote, ex);
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>
    /// Announces the connections whose <see cref="MptcpAnycastSettings.AnnounceDelay"/> has passed, in accept order
    /// (one delay for all, so the queue is in due order), checking a quarter of the delay apart (5 to 250 ms).
    /// Connections closed meanwhile are dropped without a command.
    /// </summary>
    private Task AnnounceWhenDueAsync() =>
        RunPeriodicallyAsync(TimeSpan.FromMilliseconds(Math.Clamp(_settings.AnnounceDelay.TotalMilliseconds / 4, 5, 250)), now =>
        {
            while (_delayed.TryPeek(out (MptcpConnectionState State, DateTimeOffset Due) head) && head.Due <= now && _delayed.TryDequeue(out head))
            {
                MptcpConnectionState state = head.State;
                if (state.IsClosed)
                {
                    _metrics.Announcement("closed_before_delay");
                }
                else if (TryAcquireBudget(state))
                {
                    _ = AnnounceCoreAsync(state, _stopping.Token);
                }
            }
        });

    /// <summary>Marks joins that did not come in time, reading joins from the sockets where events do not tell.</summary>
    private Task SweepAsync() =>
        RunPeriodicallyAsync(TimeSpan.FromMilliseconds(Math.Clamp(_settings.JoinTimeout.TotalMilliseconds / 4, 50, 1000)), now =>
        {
            _rateLimiter.Prune(now);
            foreach (MptcpConnectionState state in _byToken.Values)
            {
                if (state.State != UnicastSubflowState.Announced)
                {
                    continue;
                }

                // Without events, joins are read from the sockets; with them, once more before giving up on a
                // connection, in case its join event was among those the kernel dropped without telling.
                if (!_followingEvents || state.IsJoinOverdue(now, _settings.JoinTimeout))
                {
                    CheckJoinFromSocket(state);
                }

                if (state.TryMarkJoinTimedOut(now, _settings.JoinTimeout))
                {
                    _metrics.JoinTimedOut();
                    MptcpAnycastLog.JoinTimedOut(_logger, state.ConnectionId, state.AnnouncedEndPoint!, _settings.JoinTimeout);
                }
            }
        });

    /// <summary>Runs <paramref name="tick"/> with the current time every <paramref name="period"/> until the announcer stops.</summary>
    private async Task RunPeriodicallyAsync(TimeSpan period, Action<DateTimeOffset> tick)
    {
        using var timer = new PeriodicTimer(period, _time);
        try
        {
            while (await timer.WaitForNextTickAsync(_stopping.Token).ConfigureAwait(false))
            {
                tick(_time.GetUtcNow());
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private ResiliencePipeline BuildPipeline()
    {
        var builder = new ResiliencePipelineBuilder();
        if (_pathManager is null)
        {
            return builder.Build();
        }

        IPathManager manager = _pathManager;
        return builder
            .AddCircuitBreaker(new CircuitBreakerStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<Exception>(ex => ex is TimeoutRejectedException || manager.Classify(ex) == PathManagerFailure.Systemic),
                FailureRatio = 0.5,
                MinimumThroughput = 10,
                SamplingDuration = TimeSpan.FromSeconds(10),
                BreakDuration = CircuitBreakDuration,
                OnOpened = args =>
                {
                    MptcpAnycastLog.PathManagerUnavailable(_logger, args.Outcome.Exception);
                    return default;
                },
                OnClosed = _ =>
                {
                    MptcpAnycastLog.PathManagerRecovered(_logger);
                    return default;
                },
            })
            .AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<Exception>(ex => manager.Classify(ex) == PathManagerFailure.Transient),
                MaxRetryAttempts = 3,
                Delay = TimeSpan.FromMilliseconds(2),
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
            })
            .AddTimeout(TimeSpan.FromSeconds(2))
            .Build();
    }

    private static bool SameAddress(IPEndPoint a, IPEndPoint b)
        => UnicastAnnouncementPolicy.Normalize(a.Address).Equals(UnicastAnnouncementPolicy.Normalize(b.Address));

    private static bool SameEndPoint(IPEndPoint a, IPEndPoint b) => a.Port == b.Port && SameAddress(a, b);

    private static IPEndPoint Normalize(IPEndPoint endPoint)
        => endPoint.Address.IsIPv4MappedToIPv6 ? new IPEndPoint(endPoint.Address.MapToIPv4(), endPoint.Port) : endPoint;

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        if (_pathManager is not null)
        {
            await _pathManager.DisposeAsync().ConfigureAwait(false);
        }

        try
        {
            await Task.WhenAll(_eventLoop, _sweeper, _delayedAnnouncements).WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
        }

        _stopping.Dispose();
    }
}
