using Microsoft.Extensions.Logging;
using MptcpAnycast.Kestrel.Announcing;
using MptcpAnycast.Kestrel.Connections;
using MptcpAnycast.Kestrel.Diagnostics;

namespace MptcpAnycast.Kestrel.Control;

/// <summary>
/// Everything the transport does for its connections besides serving them, off Kestrel's accept loop: the control loop
/// that announces (<see cref="UnicastAnnouncer"/>), tracks joins (<see cref="JoinTracker"/>), applies the after-join
/// policy (<see cref="AfterJoinCommands"/>), reconciles after lost events and subscribes again when the event socket
/// breaks. Nothing happens before <see cref="Start"/>.
/// </summary>
internal sealed class ControlPath : IAsyncDisposable
{
    private readonly MptcpAnycastSettings _settings;
    private readonly ILogger _logger;
    private readonly MptcpAnycastMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly ControlPathTuning _tuning;
    private readonly ConnectionRegistry _registry = new();
    private readonly ControlLoop _loop;
    private readonly JoinTracker _joins;
    private readonly ControlPlanePipeline _pipeline;
    private IPathManager? _pathManager;
    private string _unavailableReason;
    private UnicastAnnouncer _announcer = null!; // made by Start
    private AfterJoinCommands? _afterJoin;
    private DateTimeOffset _eventsLostSince;
    private int _started;

    /// <param name="settings">The validated options.</param>
    /// <param name="mode">The mode in effect (Auto resolved).</param>
    /// <param name="pathManager">The path manager (owned from here on), or null when it is unavailable.</param>
    /// <param name="unavailableReason">Why there is no path manager, or null.</param>
    /// <param name="logger">The transport's logger.</param>
    /// <param name="metrics">The transport's meter.</param>
    /// <param name="time">The clock of timers and timestamps.</param>
    /// <param name="tuning">Knobs tests turn; null for <see cref="ControlPathTuning.Default"/>.</param>
    public ControlPath(MptcpAnycastSettings settings, AnnouncementMode mode, IPathManager? pathManager, string? unavailableReason,
        ILogger logger, MptcpAnycastMetrics metrics, TimeProvider time, ControlPathTuning? tuning = null)
    {
        _settings = settings;
        Mode = mode;
        Policy = settings.CreatePolicy();
        _pathManager = pathManager;
        _unavailableReason = unavailableReason ?? "the path manager is not available";
        _logger = logger;
        _metrics = metrics;
        _time = time;
        _tuning = tuning ?? ControlPathTuning.Default;
        _loop = new ControlLoop(Handle, (work, ex) => MptcpAnycastLog.ControlWorkFailed(logger, work.Kind, work.Connection?.ConnectionId, ex), time);
        _pipeline = new ControlPlanePipeline(_tuning.CircuitBreakDuration, logger);
        _joins = new JoinTracker(settings, _registry, AfterJoinCommands.IsNeeded(settings.AfterJoin, mode) && pathManager is not null, metrics, logger,
            time, _tuning.ReadSubflows, _loop.Post);
    }

    public AnnouncementMode Mode { get; }

    public UnicastAnnouncementPolicy Policy { get; }

    /// <summary>Connections tracked now (MPTCP ones whose unicast subflow can still change).</summary>
    public int TrackedConnections => _registry.Count;

    internal bool IsFollowingEvents => _joins.IsFollowingEvents;

    /// <summary>Whether announcements are paused because the path manager fails for everyone (the circuit is open).</summary>
    internal bool IsAnnouncementPaused => _pipeline.IsCircuitOpen;

    /// <summary>Whether events are to be followed at all: there is a path manager and a mode that announces.</summary>
    internal bool ExpectsEvents => Volatile.Read(ref _pathManager) is not null && Mode != AnnouncementMode.None;

    /// <summary>Why no announcement can be made at all (no path manager, or no event subscription in Userspace mode), or null.</summary>
    internal string? AnnouncementsOffReason =>
        Mode != AnnouncementMode.None && Volatile.Read(ref _pathManager) is null ? Volatile.Read(ref _unavailableReason) : null;

    /// <summary>
    /// Subscribes to the path manager's events and starts the control loop and its timers. In Userspace mode, events
    /// are a must: without a subscriber the kernel resets every join, so a failed subscription turns announcements off.
    /// </summary>
    public void Start()
    {
        if (Interlocked.Exchange(ref _started, 1) != 0)
        {
            throw new InvalidOperationException("the control path is already started");
        }

        if (_pathManager is not null && Mode != AnnouncementMode.None)
        {
            if (_pathManager.TrySubscribe(_joins, out string? problem))
            {
                _joins.IsFollowingEvents = true;
            }
            else if (Mode == AnnouncementMode.Userspace)
            {
                MptcpAnycastLog.NoNetAdmin(_logger, "cannot subscribe to path-manager events, so per-connection announcements are off");
                _pathManager.DisposeAsync().AsTask().GetAwaiter().GetResult();
                _pathManager = null;
                _unavailableReason = $"announcements are off: {problem}";
            }
            else
            {
                MptcpAnycastLog.EventsUnavailable(_logger, problem ?? "unknown");
            }
        }

        _announcer = new UnicastAnnouncer(_settings, Mode, Policy, _pathManager, _unavailableReason, _registry, _joins, _pipeline, _metrics, _logger, _time);
        if (_pathManager is not null && AfterJoinCommands.IsNeeded(_settings.AfterJoin, Mode))
        {
            _afterJoin = new AfterJoinCommands(_settings.AfterJoin, _pathManager, _pipeline, _logger);
        }

        _metrics.ObserveTrackedConnections(() => TrackedConnections);
        if (Mode is AnnouncementMode.Userspace or AnnouncementMode.Kernel)
        {
            _loop.Every(TimeSpan.FromMilliseconds(Math.Clamp(_settings.JoinTimeout.TotalMilliseconds / 4, 50, 1000)), ControlWorkKind.Sweep);
        }

        if (UnicastAnnouncer.IsDelaying(_settings, Mode))
        {
            // Checked a quarter of the delay apart (5 to 250 ms), so an announcement comes at most that late.
            _loop.Every(TimeSpan.FromMilliseconds(Math.Clamp(_settings.AnnounceDelay.TotalMilliseconds / 4, 5, 250)), ControlWorkKind.AnnounceDue);
        }

        _loop.Start();
    }

    /// <summary>From Kestrel's accept loop: queues the connection for the control loop. Never blocks.</summary>
    public void OnAccepted(TrackedConnection connection) => _loop.Post(new ControlWork(ControlWorkKind.Accepted, connection));

    /// <summary>From Kestrel's close notification.</summary>
    public void OnClosed(TrackedConnection connection) => _loop.Post(new ControlWork(ControlWorkKind.Closed, connection));

    /// <summary>
    /// The application asks for the announcement; the answer comes once the control loop has made it (a few
    /// microseconds after the work queued before it).
    /// </summary>
    public ValueTask<bool> AnnounceAsync(TrackedConnection connection, CancellationToken cancellationToken)
    {
        if (connection.AnnouncedEndPoint is not null)
        {
            return ValueTask.FromResult(true);
        }

        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<bool>(cancellationToken);
        }

        var answer = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        CancellationTokenRegistration registration = cancellationToken.UnsafeRegister(
            static (s, ct) => ((TaskCompletionSource<bool>)s!).TrySetCanceled(ct), answer);
        answer.Task.ContinueWith(static (_, r) => ((CancellationTokenRegistration)r!).Dispose(), registration, CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        _loop.Post(new ControlWork(ControlWorkKind.AnnounceOnDemand, connection, answer));
        return new ValueTask<bool>(answer.Task);
    }

    /// <summary>How long the application's first look at a connection may wait for the control loop to have decided about it.</summary>
    internal static readonly TimeSpan DecisionWait = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// The application reads the unicast subflow's state. Right after accept it waits (typically microseconds, at most
    /// <see cref="DecisionWait"/> when the control loop is held up) until the control loop has looked at the connection;
    /// then a join still awaited is looked for in the socket.
    /// </summary>
    public void Refresh(TrackedConnection connection)
    {
        if (!connection.IsDecided)
        {
            SpinWait.SpinUntil(() => connection.IsDecided, DecisionWait);
        }

        if (connection.State == UnicastSubflowState.Announced)
        {
            _joins.CheckSocket(connection);
        }
    }

    /// <summary>Stops the loop and its timers, then closes the path manager (ending the event subscription).</summary>
    public async ValueTask DisposeAsync()
    {
        _loop.Dispose();
        if (_pathManager is not null)
        {
            await _pathManager.DisposeAsync().ConfigureAwait(false);
        }
    }

    private void Handle(ControlWork work)
    {
        switch (work.Kind)
        {
            case ControlWorkKind.Accepted:
                _announcer.OnAccepted(work.Connection!);
                break;
            case ControlWorkKind.Closed:
                _joins.OnClosed(work.Connection!);
                break;
            case ControlWorkKind.AnnounceOnDemand:
                var answer = (TaskCompletionSource<bool>)work.State!;
                if (!answer.Task.IsCompleted)
                {
                    answer.TrySetResult(_announcer.AnnounceOnDemand(work.Connection!));
                }

                break;
            case ControlWorkKind.AfterJoin:
                _afterJoin?.Run(work.Connection!);
                break;
            case ControlWorkKind.Reconcile:
                _metrics.EventsLost();
                _joins.Reconcile();
                break;
            case ControlWorkKind.EventsEnded:
                _joins.IsFollowingEvents = false;
                _eventsLostSince = _time.GetUtcNow();
                MptcpAnycastLog.EventsUnavailable(_logger, (string)work.State!);
                _loop.After(_tuning.FirstResubscribeDelay, new ControlWork(ControlWorkKind.Resubscribe, State: 1));
                break;
            case ControlWorkKind.Resubscribe:
                Resubscribe((int)work.State!);
                break;
            case ControlWorkKind.AnnounceDue:
                _announcer.AnnounceDue(_time.GetUtcNow());
                break;
            case ControlWorkKind.Sweep:
                DateTimeOffset now = _time.GetUtcNow();
                _announcer.Prune(now);
                _joins.Sweep(now);
                break;
        }
    }

    /// <summary>
    /// One try to subscribe to events again; the next comes twice as long after this one, up to the cap. Once it
    /// works, joins come as events again, and every tracked connection is read from its socket: whatever happened in
    /// the gap was not heard.
    /// </summary>
    private void Resubscribe(int attempt)
    {
        if (_pathManager is null)
        {
            return;
        }

        if (_pathManager.TrySubscribe(_joins, out string? problem))
        {
            _joins.IsFollowingEvents = true;
            MptcpAnycastLog.EventsResumed(_logger, attempt, _time.GetUtcNow() - _eventsLostSince);
            _metrics.EventsLost();
            _joins.Reconcile();
            return;
        }

        TimeSpan delay = TimeSpan.FromMilliseconds(Math.Min(_tuning.FirstResubscribeDelay.TotalMilliseconds * Math.Pow(2, attempt),
            _tuning.MaxResubscribeDelay.TotalMilliseconds));
        MptcpAnycastLog.ResubscribeFailed(_logger, attempt, problem ?? "unknown", delay);
        _loop.After(delay, new ControlWork(ControlWorkKind.Resubscribe, State: attempt + 1));
    }
}
