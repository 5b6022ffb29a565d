using System.Threading.Channels;

namespace MptcpAnycast.PathManagement;

/// <summary>
/// A reader of path-manager events, from <see cref="PathManagerClient.SubscribeEvents"/>. Events wait in a bounded
/// buffer; when it is full, new events are dropped (counted in <see cref="DroppedEvents"/>) rather than slowing the
/// kernel socket, and the stream then carries one <see cref="PathManagerEventType.EventsLost"/> marker. Disposing ends
/// the stream; it does not end the client's own subscription to the kernel (see <see cref="PathManagerClient"/>).
/// </summary>
public sealed class PathManagerEventSubscription : IAsyncDisposable, IDisposable
{
    private readonly Channel<PathManagerEvent> _channel;
    private readonly PathManagerClient _owner;
    private long _dropped;
    private bool _lossPending;

    private readonly ulong _types; // bit n set: event type n is wanted

    // deliverOnEventThread: run the reader's continuation on the client's event thread when it is waiting (no
    // thread-pool hop); only for a reader that never blocks, such as the transport's announcer, never for user code.
    internal PathManagerEventSubscription(PathManagerClient owner, int capacity, IReadOnlyCollection<PathManagerEventType>? types = null,
        bool deliverOnEventThread = false)
    {
        _owner = owner;
        _types = ulong.MaxValue;
        if (types is not null)
        {
            _types = 0;
            foreach (PathManagerEventType type in types)
            {
                if ((int)type is >= 0 and < 64)
                {
                    _types |= 1UL << (int)type;
                }
            }
        }

        _channel = Channel.CreateBounded<PathManagerEvent>(new BoundedChannelOptions(capacity)
        {
            FullMode = BoundedChannelFullMode.Wait, // never waited on: the writer uses TryWrite and counts what does not fit
            SingleWriter = true,
            SingleReader = false,
            AllowSynchronousContinuations = deliverOnEventThread,
        });
    }

    /// <summary>Events dropped because this subscriber's buffer was full.</summary>
    public long DroppedEvents => Interlocked.Read(ref _dropped);

    /// <summary>
    /// The events, in kernel order, until the subscription or its client is disposed. A
    /// <see cref="PathManagerEventType.EventsLost"/> marker stands where events were lost. When the client's event
    /// socket fails, the stream ends (after the events already buffered) by throwing a <see cref="PathManagerException"/>.
    /// </summary>
    public IAsyncEnumerable<PathManagerEvent> ReadAllAsync(CancellationToken cancellationToken = default) =>
        _channel.Reader.ReadAllAsync(cancellationToken);

    /// <summary>Takes one waiting event, if there is one, without waiting.</summary>
    public bool TryRead([System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out PathManagerEvent? pathManagerEvent) =>
        _channel.Reader.TryRead(out pathManagerEvent);

    /// <summary>Ends the stream and detaches from the client.</summary>
    public void Dispose()
    {
        _owner.Unsubscribe(this);
        Complete();
    }

    /// <inheritdoc cref="Dispose"/>
    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }

    /// <summary>Bit n set: event type n is wanted (all bits: every type).</summary>
    internal ulong WantedTypes => _types;

    /// <summary>Whether this subscriber takes events of generic-netlink command <paramref name="type"/>.</summary>
    internal bool Wants(byte type) => type < 64 && (_types & (1UL << type)) != 0;

    // Publish and ReportLoss run only on the client's event loop (the single writer).
    internal void Publish(PathManagerEvent pathManagerEvent)
    {
        if (_lossPending && !TryWriteMarker())
        {
            Interlocked.Increment(ref _dropped);
            return;
        }

        if (!_channel.Writer.TryWrite(pathManagerEvent))
        {
            Interlocked.Increment(ref _dropped);
            _lossPending = true;
        }
    }

    internal void ReportLoss()
    {
        _lossPending = true;
        TryWriteMarker();
    }

    /// <summary>Ends the stream: normally, or with <paramref name="error"/>, which the reader gets after the buffered events.</summary>
    internal void Complete(Exception? error = null) => _channel.Writer.TryComplete(error);

    private bool TryWriteMarker()
    {
        if (_channel.Writer.TryWrite(PathManagerEvent.Lost))
        {
            _lossPending = false;
            return true;
        }

        return false;
    }
}
