using MptcpAnycast.Interop;
using MptcpAnycast.Netlink;

namespace MptcpAnycast.PathManagement;

/// <summary>The client's subscription to <c>mptcp_pm_events</c> and the handlers it feeds (see the remarks on the class).</summary>
public sealed partial class PathManagerClient
{
    private readonly Lock _eventsGate = new();
    private NetlinkSocket? _spareEventSocket; // under _eventsGate: made at open, in the client's namespace
    private PathManagerEventSocket? _events;   // under _eventsGate; null before the first subscription and after a failure
    private volatile bool _subscribed;

    /// <summary>
    /// True while the client holds its <c>mptcp_pm_events</c> subscription: false before the first one, and again after
    /// the event socket failed until the next subscription or userspace-PM command.
    /// </summary>
    public bool IsSubscribedToEvents => _subscribed;

    /// <summary>Event datagrams the kernel queued on the current event socket and the client read (after the kernel-side filter).</summary>
    internal long EventDatagramsReceived => Volatile.Read(ref _events)?.DatagramsReceived ?? 0;

    /// <summary>The event socket's receive buffer as the kernel set it (twice the requested size), or -1 when there is none.</summary>
    internal int EventReceiveBufferSize
    {
        get
        {
            lock (_eventsGate)
            {
                return _events?.ReceiveBufferSize ?? _spareEventSocket?.ReceiveBufferSize ?? -1;
            }
        }
    }

    private Task EventThreadEnded => Volatile.Read(ref _events)?.Ended ?? Task.CompletedTask;

    /// <summary>
    /// Hands path-manager events of the client's namespace to <paramref name="handler"/>, on the client's event thread, as
    /// the kernel delivers them. Joins <c>mptcp_pm_events</c> (needs <c>CAP_NET_ADMIN</c>) if the client has not yet.
    /// Dispose the result to stop.
    /// </summary>
    /// <param name="handler">Must not block (see <see cref="IPathManagerEventHandler"/>).</param>
    /// <param name="types">Only these event types (null: all). Events of other types are not even queued by the kernel,
    /// which matters at thousands of connections per second. <see cref="PathManagerEventType.EventsLost"/> markers always come.</param>
    /// <exception cref="PathManagerException">Joining the event group failed (<c>EPERM</c>: no <c>CAP_NET_ADMIN</c>), or a
    /// replacement event socket could not be opened.</exception>
    public IDisposable AddEventHandler(IPathManagerEventHandler handler, IReadOnlyCollection<PathManagerEventType>? types = null)
    {
        ArgumentNullException.ThrowIfNull(handler);
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        lock (_eventsGate)
        {
            // One step under the gate: a socket failure is either before (and this opens a fresh socket) or after
            // (and it ends this handler too), never in between.
            return JoinEvents().Add(handler, PathManagerEventSocket.MaskOf(types));
        }
    }

    /// <summary>
    /// Starts reading path-manager events of the client's namespace into a new bounded buffer of
    /// <paramref name="capacity"/> events, for <see cref="PathManagerEventSubscription.ReadAllAsync"/>. A slow reader never
    /// blocks the kernel socket: what does not fit is dropped and counted.
    /// </summary>
    /// <param name="capacity">How many events may wait for the reader.</param>
    /// <param name="types">As for <see cref="AddEventHandler"/>.</param>
    /// <remarks>If the event socket fails, the stream ends with a <see cref="PathManagerException"/>; subscribe again to go on,
    /// and reconcile what happened in between (see the remarks on the class).</remarks>
    /// <exception cref="PathManagerException">As for <see cref="AddEventHandler"/>.</exception>
    public PathManagerEventSubscription SubscribeEvents(int capacity = 4096, IReadOnlyCollection<PathManagerEventType>? types = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        var subscription = new PathManagerEventSubscription(capacity);
        subscription.Attach(AddEventHandler(subscription.Handler, types));
        return subscription;
    }

    /// <summary>
    /// Test hook: closes the event socket behind the client's back, as when its descriptor is closed elsewhere. Within
    /// one receive timeout the event thread finds it gone; the client is not shutting down, so it handles this as a failed
    /// event socket (<c>EBADF</c>), unlike <see cref="Dispose"/>.
    /// </summary>
    internal void CloseEventSocketBehindTheClientsBack()
    {
        lock (_eventsGate)
        {
            _events?.CloseBehindTheReadersBack();
        }
    }

    private void HoldEventSubscription()
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (_options.HoldEventSubscription && !_subscribed)
        {
            lock (_eventsGate)
            {
                JoinEvents();
            }
        }
    }

    /// <summary>The live event socket, opening and joining one when there is none. Called under <see cref="_eventsGate"/>.</summary>
    private PathManagerEventSocket JoinEvents()
    {
        if (_events is { } live)
        {
            return live;
        }

        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (_family.EventGroupId == 0)
        {
            throw new PathManagerException("subscribe mptcp_pm_events", Errno.ENOENT, null,
                "the kernel's mptcp_pm family has no mptcp_pm_events multicast group");
        }

        try
        {
            // After a failure the spare is gone: open the replacement where the client was opened.
            NetlinkSocket socket = Interlocked.Exchange(ref _spareEventSocket, null) ?? _namespace.Run(NetlinkSocket.Open);
            _events = PathManagerEventSocket.Start(socket, _family.FamilyId, _family.EventGroupId, _options.EventReceiveBufferSize, OnEventSocketFailed);
        }
        catch (NetlinkException ex)
        {
            throw PathManagerException.From(ex, "subscribe mptcp_pm_events");
        }
        catch (UnauthorizedAccessException ex)
        {
            throw new PathManagerException("subscribe mptcp_pm_events", Errno.EPERM, null, ex.Message, ex);
        }

        _subscribed = true;
        return _events;
    }

    /// <summary>The event socket failed (not our shutdown): the kernel no longer counts us as subscribed; the next join opens a fresh one.</summary>
    private void OnEventSocketFailed(PathManagerEventSocket socket)
    {
        lock (_eventsGate)
        {
            if (ReferenceEquals(_events, socket))
            {
                _events = null;
                _subscribed = false;
            }
        }
    }

    private void CloseEvents()
    {
        PathManagerEventSocket? events;
        lock (_eventsGate)
        {
            events = _events;
            _events = null;
            _subscribed = false;
            Interlocked.Exchange(ref _spareEventSocket, null)?.Dispose();
        }

        events?.Dispose();
    }
}
