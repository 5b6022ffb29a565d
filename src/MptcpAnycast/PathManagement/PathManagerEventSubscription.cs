using System.Threading.Channels;

namespace MptcpAnycast.PathManagement;

/// <summary>
/// A buffered reader of path-manager events, from <see cref="PathManagerClient.SubscribeEvents(int, IReadOnlyCollection{PathManagerEventType}?)"/>:
/// an <see cref="IPathManagerEventHandler"/> that puts the events in a bounded buffer for <see cref="ReadAllAsync"/>.
/// When the buffer is full, new events are dropped (counted in <see cref="DroppedEvents"/>) rather than slowing the
/// kernel socket, and the stream then carries one <see cref="PathManagerEventType.EventsLost"/> marker. Disposing ends
/// the stream; it does not end the client's own subscription to the kernel (see <see cref="PathManagerClient"/>).
/// </summary>
public sealed class PathManagerEventSubscription : IAsyncDisposable, IDisposable
{
    private readonly Channel<PathManagerEvent> _channel;
    private IDisposable? _registration;
    private long _dropped;
    private bool _lossPending; // only the event thread writes

    internal PathManagerEventSubscription(int capacity)
    {
        _channel = Channel.CreateBounded<PathManagerEvent>(new BoundedChannelOptions(capacity)
        {
            FullMode = BoundedChannelFullMode.Wait, // never waited on: the writer uses TryWrite and counts what does not fit
            SingleWriter = true,
            SingleReader = false,
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
        Interlocked.Exchange(ref _registration, null)?.Dispose();
        _channel.Writer.TryComplete();
    }

    /// <inheritdoc cref="Dispose"/>
    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }

    /// <summary>The handler that fills the buffer: registered with the client, which hands back what <see cref="Attach"/> keeps.</summary>
    internal IPathManagerEventHandler Handler => new Writer(this);

    /// <summary>Keeps the handler's registration, which <see cref="Dispose"/> ends.</summary>
    internal void Attach(IDisposable registration)
    {
        if (Interlocked.CompareExchange(ref _registration, registration, null) is not null)
        {
            registration.Dispose();
        }
    }

    private void Publish(PathManagerEvent pathManagerEvent)
    {
        if (pathManagerEvent.Type == PathManagerEventType.EventsLost)
        {
            _lossPending = true;
            TryWriteMarker();
            return;
        }

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

    private bool TryWriteMarker()
    {
        if (_channel.Writer.TryWrite(PathManagerEvent.Lost))
        {
            _lossPending = false;
            return true;
        }

        return false;
    }

    /// <summary>Runs on the client's event thread: never blocks, only tries to write into the buffer.</summary>
    private sealed class Writer(PathManagerEventSubscription owner) : IPathManagerEventHandler
    {
        public void OnEvent(PathManagerEvent pathManagerEvent) => owner.Publish(pathManagerEvent);

        public void OnCompleted(PathManagerException? error) => owner._channel.Writer.TryComplete(error);
    }
}
