using System.Collections.Concurrent;
using MptcpAnycast.Kestrel.Connections;

namespace MptcpAnycast.Kestrel.Control;

/// <summary>What the control loop is asked to do.</summary>
internal enum ControlWorkKind
{
    /// <summary>A connection was accepted: decide, track, announce (or schedule it).</summary>
    Accepted,

    /// <summary>Kestrel reported a connection closed.</summary>
    Closed,

    /// <summary>The application asked for the announcement (<see cref="IMptcpConnectionFeature.AnnounceAsync"/>); State is the answer's source.</summary>
    AnnounceOnDemand,

    /// <summary>A connection joined: apply the after-join policy to its anycast subflow.</summary>
    AfterJoin,

    /// <summary>Events were lost: read every tracked connection from its socket.</summary>
    Reconcile,

    /// <summary>The event subscription broke; State is the reason.</summary>
    EventsEnded,

    /// <summary>Try to subscribe to events again; State is the attempt.</summary>
    Resubscribe,

    /// <summary>The delayed-announcement timer fired.</summary>
    AnnounceDue,

    /// <summary>The join-timeout sweeper fired.</summary>
    Sweep,
}

/// <summary>One item of work for the control loop.</summary>
internal readonly record struct ControlWork(ControlWorkKind Kind, TrackedConnection? Connection = null, object? State = null);

/// <summary>
/// The transport's control path: one thread of its own that does, in order, everything about connections that talks
/// to the kernel's path manager or needs a timer, so that none of it runs on Kestrel's accept loop or on the thread
/// pool. Path-manager commands are synchronous exchanges of a few microseconds, bounded by the command socket's
/// receive timeout; running them here one at a time keeps the command socket's answers in order.
/// </summary>
internal sealed class ControlLoop : IDisposable
{
    private readonly ConcurrentQueue<ControlWork> _queue = new();
    private readonly SemaphoreSlim _signal = new(0);
    private readonly Action<ControlWork> _handle;
    private readonly Action<ControlWork, Exception> _onError;
    private readonly TimeProvider _time;
    private readonly List<ITimer> _timers = [];
    private Thread? _thread;
    private volatile bool _stopping;
    private int _wakePending;

    /// <param name="handle">Does one item; runs on the loop's thread only.</param>
    /// <param name="onError">Hears an exception <paramref name="handle"/> let through; the loop goes on.</param>
    /// <param name="time">Drives the timers.</param>
    public ControlLoop(Action<ControlWork> handle, Action<ControlWork, Exception> onError, TimeProvider time)
    {
        _handle = handle;
        _onError = onError;
        _time = time;
    }

    /// <summary>Whether the calling thread is the loop's own.</summary>
    public bool IsLoopThread => Thread.CurrentThread == _thread;

    /// <summary>Starts the loop's thread; work posted before runs first, in order.</summary>
    public void Start()
    {
        _thread = new Thread(Run) { IsBackground = true, Name = "mptcp-anycast control" };
        _thread.Start();
    }

    /// <summary>Queues <paramref name="work"/>; never blocks.</summary>
    public void Post(ControlWork work)
    {
        if (_stopping)
        {
            return;
        }

        _queue.Enqueue(work);
        if (Interlocked.Exchange(ref _wakePending, 1) == 0)
        {
            _signal.Release();
        }
    }

    /// <summary>Posts <paramref name="kind"/> every <paramref name="period"/> until the loop stops.</summary>
    public void Every(TimeSpan period, ControlWorkKind kind)
    {
        lock (_timers)
        {
            _timers.Add(_time.CreateTimer(static s => ((ControlLoop)((object[])s!)[0]).Post(new ControlWork((ControlWorkKind)((object[])s!)[1])),
                new object[] { this, kind }, period, period));
        }
    }

    /// <summary>Posts <paramref name="work"/> once, after <paramref name="delay"/>.</summary>
    public void After(TimeSpan delay, ControlWork work)
    {
        var holder = new OneShot(this, work);
        lock (_timers)
        {
            holder.Timer = _time.CreateTimer(static s => ((OneShot)s!).Fire(), holder, delay, Timeout.InfiniteTimeSpan);
            _timers.Add(holder.Timer);
        }
    }

    /// <summary>Stops the timers and the thread; work still queued is dropped. Waits for the item being done, at most 5 s.</summary>
    public void Dispose()
    {
        _stopping = true;
        lock (_timers)
        {
            _timers.ForEach(t => t.Dispose());
            _timers.Clear();
        }

        _signal.Release();
        if (_thread is not null && _thread != Thread.CurrentThread)
        {
            _thread.Join(TimeSpan.FromSeconds(5));
        }
    }

    private void Run()
    {
        while (!_stopping)
        {
            while (!_stopping && _queue.TryDequeue(out ControlWork work))
            {
                try
                {
                    _handle(work);
                }
                catch (Exception ex)
                {
                    _onError(work, ex); // one bad item must not end the control path
                }
            }

            Volatile.Write(ref _wakePending, 0);
            if (_queue.IsEmpty && !_stopping)
            {
                _signal.Wait();
            }
        }
    }

    private sealed class OneShot(ControlLoop loop, ControlWork work)
    {
        public ITimer? Timer { get; set; }

        public void Fire()
        {
            loop.Post(work);
            lock (loop._timers)
            {
                if (Timer is not null)
                {
                    loop._timers.Remove(Timer);
                    Timer.Dispose();
                }
            }
        }
    }
}
