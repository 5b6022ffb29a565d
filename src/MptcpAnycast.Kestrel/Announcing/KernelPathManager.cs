using System.Net;
using System.Runtime.CompilerServices;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Kestrel.Announcing;

/// <summary><see cref="IPathManager"/> over the kernel's <c>mptcp_pm</c> generic-netlink family.</summary>
internal sealed class KernelPathManager : IPathManager
{
    private const int ENOBUFS = 105, EAGAIN = 11, EBUSY = 16, EINTR = 4, ENOMEM = 12, EINVAL = 22, ENOENT = 2, ESRCH = 3;

    /// <summary>
    /// The events the announcer needs: joins and lost anycast subflows. Not CLOSED: Kestrel reports every close, and a
    /// CLOSED per connection would be work for the kernel and a wake-up of the event thread at every connection.
    /// </summary>
    private static readonly PathManagerEventType[] EventTypes = [PathManagerEventType.SubflowEstablished, PathManagerEventType.SubflowClosed];

    /// <summary>The same and CLOSED, for the event-lag harness, which times the kernel's CLOSED events.</summary>
    private static readonly PathManagerEventType[] EventTypesWithClosed = [.. EventTypes, PathManagerEventType.Closed];

    /// <summary>
    /// How many events may wait for the announcer before they are dropped (and reconciled). The announcer takes its
    /// events on the client's event thread (it never blocks), so they wait here only while it is busy with earlier ones.
    /// </summary>
    private const int EventCapacity = 16384;

    private readonly PathManagerClient _client;
    private readonly PathManagerEventType[] _eventTypes;
    private volatile PathManagerEventSubscription? _events;

    private KernelPathManager(PathManagerClient client, PathManagerEventType[] eventTypes)
    {
        _client = client;
        _eventTypes = eventTypes;
    }

    public PathManagerClient Client => _client;

    /// <summary>
    /// Opens the client and, when <paramref name="subscribe"/>, an event subscription (which also keeps userspace-PM joins
    /// from being reset). A failed subscription is reported in the second value of the result.
    /// </summary>
    /// <param name="subscribe">Whether to subscribe to events.</param>
    /// <param name="eventReceiveBufferSize"><c>SO_RCVBUF</c> of the event socket in bytes, or null for the system default.</param>
    /// <param name="cancellationToken">Cancels the wait for the kernel.</param>
    /// <param name="closedEvents">Also deliver CLOSED events (only the event-lag harness wants them).</param>
    public static async Task<(KernelPathManager Manager, string? EventsProblem)> OpenAsync(bool subscribe, int? eventReceiveBufferSize,
        CancellationToken cancellationToken, bool closedEvents = false)
    {
        PathManagerClient client = await PathManagerClient.OpenAsync(
            PathManagerClientSettings.Default with { EventReceiveBufferSize = eventReceiveBufferSize }, cancellationToken).ConfigureAwait(false);
        var manager = new KernelPathManager(client, closedEvents ? EventTypesWithClosed : EventTypes);
        if (!subscribe)
        {
            return (manager, null);
        }

        return (manager, manager.TryResubscribeEvents(out string? problem) ? null : problem);
    }

    public Task AnnounceAsync(uint token, byte addressId, IPEndPoint address, CancellationToken cancellationToken)
        => _client.AnnounceAsync(token, addressId, address, cancellationToken);

    public Task SetBackupAsync(uint token, IPEndPoint local, IPEndPoint remote, bool backup, CancellationToken cancellationToken)
        => _client.SetSubflowBackupAsync(token, local, remote, backup, cancellationToken);

    public Task DestroySubflowAsync(uint token, IPEndPoint local, IPEndPoint remote, CancellationToken cancellationToken)
        => _client.DestroySubflowAsync(token, local, remote, cancellationToken);

    public IAsyncEnumerable<PathEvent>? Events => _events is { } events ? ReadEventsAsync(events) : null;

    public bool TryResubscribeEvents(out string? problem)
    {
        try
        {
            PathManagerEventSubscription fresh = _client.SubscribeEventsOnEventThread(EventCapacity, _eventTypes);
            Interlocked.Exchange(ref _events, fresh)?.Dispose();
            problem = null;
            return true;
        }
        catch (PathManagerException ex)
        {
            problem = ex.Message;
            return false;
        }
        catch (ObjectDisposedException)
        {
            problem = "the path-manager client is closed";
            return false;
        }
    }

    private static async IAsyncEnumerable<PathEvent> ReadEventsAsync(PathManagerEventSubscription events, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await foreach (PathManagerEvent e in events.ReadAllAsync(cancellationToken).ConfigureAwait(false))
        {
            PathEventKind kind = e.Type switch
            {
                PathManagerEventType.Created => PathEventKind.Created,
                PathManagerEventType.Established => PathEventKind.Established,
                PathManagerEventType.Closed => PathEventKind.Closed,
                PathManagerEventType.SubflowEstablished => PathEventKind.SubflowEstablished,
                PathManagerEventType.SubflowClosed => PathEventKind.SubflowClosed,
                PathManagerEventType.EventsLost => PathEventKind.EventsLost,
                _ => PathEventKind.Other,
            };
            if (kind != PathEventKind.Other)
            {
                yield return new PathEvent(kind, e.Token, e.Source, e.Destination);
            }
        }
    }

    public PathManagerFailure Classify(Exception exception) => exception switch
    {
        PathManagerException { Errno: ENOBUFS or EAGAIN or EBUSY or EINTR or ENOMEM } => PathManagerFailure.Transient,
        PathManagerException { Errno: EINVAL or ENOENT or ESRCH } => PathManagerFailure.Connection,
        _ => PathManagerFailure.Systemic,
    };

    public async ValueTask DisposeAsync()
    {
        if (_events is { } events)
        {
            await events.DisposeAsync().ConfigureAwait(false);
        }

        await _client.DisposeAsync().ConfigureAwait(false);
    }
}
