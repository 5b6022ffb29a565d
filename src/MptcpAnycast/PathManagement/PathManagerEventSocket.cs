using MptcpAnycast.Interop;
using MptcpAnycast.Netlink;

namespace MptcpAnycast.PathManagement;

/// <summary>
/// The client's subscription to <c>mptcp_pm_events</c>: one netlink socket joined to the group, read by a thread of
/// its own with blocking receives (the kernel wakes it directly, however busy the thread pool is), and the handlers it
/// hands the decoded events to. Once the socket fails it is dead: its handlers are told, and the client opens another.
/// </summary>
internal sealed class PathManagerEventSocket : IDisposable
{
    private const int DatagramBufferSize = 64 * 1024;

    /// <summary>How often a blocked receive wakes to notice shutdown: closing a netlink socket does not wake a thread blocked on it.</summary>
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(200);

    private readonly NetlinkSocket _socket;
    private readonly ushort _familyId;
    private readonly Action<PathManagerEventSocket> _onFailed;
    private readonly Lock _gate = new();
    private readonly TaskCompletionSource _ended = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile Registration[] _handlers = [];
    private volatile bool _stopping;
    private long _datagrams;
    private int _completed;

    private PathManagerEventSocket(NetlinkSocket socket, ushort familyId, Action<PathManagerEventSocket> onFailed)
    {
        _socket = socket;
        _familyId = familyId;
        _onFailed = onFailed;
    }

    /// <summary>Datagrams the kernel queued (after the kernel-side filter) and the thread read.</summary>
    public long DatagramsReceived => Interlocked.Read(ref _datagrams);

    /// <summary>The receive buffer as the kernel set it (twice the requested size).</summary>
    public int ReceiveBufferSize => _socket.ReceiveBufferSize;

    /// <summary>Completes when the reading thread has ended.</summary>
    public Task Ended => _ended.Task;

    /// <summary>
    /// Joins <paramref name="socket"/> (made in the client's namespace; this takes it over) to <paramref name="groupId"/>,
    /// which needs <c>CAP_NET_ADMIN</c>, and starts reading. <paramref name="onFailed"/> runs on the reading thread when
    /// the socket fails (not when it is disposed).
    /// </summary>
    /// <exception cref="NetlinkException">The group cannot be joined (<c>EPERM</c>) or the socket configured.</exception>
    public static PathManagerEventSocket Start(NetlinkSocket socket, ushort familyId, uint groupId, int? receiveBufferSize,
        Action<PathManagerEventSocket> onFailed)
    {
        try
        {
            if (receiveBufferSize is int size)
            {
                socket.SetReceiveBuffer(size);
            }

            socket.FilterGenericCommands(0); // nothing is queued until a handler wants it
            int errno = socket.JoinGroup(groupId);
            if (errno != 0)
            {
                throw new NetlinkException("subscribe mptcp_pm_events", errno);
            }

            errno = NativeSocket.SetReceiveTimeout(socket.Socket.SafeHandle, PollInterval);
            if (errno != 0)
            {
                throw new NetlinkException("setsockopt(SO_RCVTIMEO)", errno);
            }
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        var events = new PathManagerEventSocket(socket, familyId, onFailed);
        new Thread(events.ReceiveLoop) { IsBackground = true, Name = "mptcp_pm events" }.Start();
        return events;
    }

    /// <summary>Adds a handler for the event types in <paramref name="wantedTypes"/> (bit n: type n; all bits: every type).</summary>
    public Registration Add(IPathManagerEventHandler handler, ulong wantedTypes)
    {
        var registration = new Registration(this, handler, wantedTypes);
        lock (_gate)
        {
            _handlers = [.. _handlers, registration];
            FilterEvents();
        }

        if (Volatile.Read(ref _completed) != 0)
        {
            registration.Complete(null); // ended meanwhile: the handler must still hear it
        }

        return registration;
    }

    /// <summary>
    /// Test hook: closes the socket behind the reading thread's back, as when its descriptor is closed elsewhere. Within
    /// one poll interval the thread finds it gone and, not shutting down, treats it as a failed socket (<c>EBADF</c>).
    /// </summary>
    public void CloseBehindTheReadersBack() => _socket.Socket.Dispose();

    /// <summary>Stops reading, closes the socket and ends every handler's subscription normally.</summary>
    public void Dispose()
    {
        _stopping = true;
        _socket.Dispose();
        CompleteAll(null);
    }

    private void Remove(Registration registration)
    {
        lock (_gate)
        {
            _handlers = Array.FindAll(_handlers, r => !ReferenceEquals(r, registration));
            FilterEvents();
        }
    }

    /// <summary>
    /// Has the kernel queue only the event types some handler wants (none while the subscription is only held for the
    /// userspace path manager: membership of the group is what its check looks at, not what is queued). Best effort:
    /// without the filter every event is queued and each handler's own mask still applies.
    /// </summary>
    private void FilterEvents()
    {
        ulong wanted = 0;
        foreach (Registration r in _handlers)
        {
            wanted |= r.WantedTypes;
        }

        try
        {
            _socket.FilterGenericCommands(wanted >> 32 != 0 ? uint.MaxValue : (uint)wanted);
        }
        catch (ObjectDisposedException)
        {
            // Closed meanwhile: nothing left to filter.
        }
    }

    private void ReceiveLoop()
    {
        int errno = 0;
        try
        {
            errno = Receive();
        }
        finally
        {
            if (errno != 0)
            {
                // The owner hears first, so that a handler told of the failure finds the client no longer subscribed.
                _socket.Dispose();
                _onFailed(this);
                CompleteAll(new PathManagerException("receive mptcp_pm_events", errno, null,
                    "the event socket failed, so this event stream has ended and the client is no longer subscribed to path-manager "
                    + "events (the userspace path manager resets joins while nothing is subscribed); subscribe again "
                    + "and reconcile what happened meanwhile"));
            }

            _ended.TrySetResult();
        }
    }

    /// <summary>Returns 0 on shutdown, else the errno the socket failed with.</summary>
    private int Receive()
    {
        byte[] buffer = new byte[DatagramBufferSize];
        try
        {
            // ENOBUFS says the kernel started dropping events; it goes on dropping them, without telling again, until
            // the queue has been read empty. So the loss is reported only then (reading without waiting meanwhile),
            // and whoever reconciles from the sockets does it after the last dropped event, not in the middle.
            bool dropping = false;
            while (!_stopping)
            {
                int received = NativeSocket.Receive(_socket.Socket.SafeHandle, buffer, dontWait: dropping);
                if (received >= 0)
                {
                    Interlocked.Increment(ref _datagrams);
                    Publish(buffer.AsSpan(0, received));
                }
                else if (-received == Errno.ENOBUFS)
                {
                    dropping = true;
                }
                else if (-received == Errno.EAGAIN)
                {
                    if (dropping)
                    {
                        dropping = false;
                        Deliver(PathManagerEvent.Lost); // the queue is empty: the kernel queues events again
                    }
                }
                else if (!_stopping)
                {
                    return -received;
                }
            }

            return 0;
        }
        catch (ObjectDisposedException)
        {
            return _stopping ? 0 : Errno.EBADF; // closed behind our back: a failure, not a shutdown
        }
    }

    private void Publish(ReadOnlySpan<byte> datagram)
    {
        Registration[] handlers = _handlers;
        if (handlers.Length == 0)
        {
            return; // held only for the userspace path manager: drain
        }

        var reader = new NetlinkMessageReader(datagram);
        try
        {
            while (reader.TryRead(out NetlinkMessage message))
            {
                if (message.Type != _familyId)
                {
                    continue;
                }

                // The event type is the generic netlink command: look at it before paying for the decode.
                byte type = message.Payload.Length > 0 ? message.Payload[0] : (byte)0;
                PathManagerEvent? decoded = null;
                foreach (Registration r in handlers)
                {
                    if (r.Wants(type))
                    {
                        decoded ??= MptcpPmMessages.ReadEvent(message.Payload);
                        r.Deliver(decoded);
                    }
                }
            }
        }
        catch (NetlinkFormatException)
        {
            Deliver(PathManagerEvent.Lost); // the rest of the datagram cannot be framed
        }
    }

    private void Deliver(PathManagerEvent marker)
    {
        foreach (Registration r in _handlers)
        {
            r.Deliver(marker);
        }
    }

    private void CompleteAll(PathManagerException? error)
    {
        if (Interlocked.Exchange(ref _completed, 1) != 0)
        {
            return;
        }

        Registration[] handlers;
        lock (_gate)
        {
            handlers = _handlers;
            _handlers = [];
        }

        foreach (Registration r in handlers)
        {
            r.Complete(error);
        }
    }

    /// <summary>One handler on this socket; disposing it removes the handler (and ends its subscription normally).</summary>
    internal sealed class Registration(PathManagerEventSocket owner, IPathManagerEventHandler handler, ulong wantedTypes) : IDisposable
    {
        private int _completed;

        public ulong WantedTypes { get; } = wantedTypes;

        public bool Wants(byte type) => type < 64 && (WantedTypes & (1UL << type)) != 0;

        public void Deliver(PathManagerEvent pathManagerEvent)
        {
            try
            {
                handler.OnEvent(pathManagerEvent);
            }
            catch (Exception)
            {
                // A handler's bug must not end everyone's events.
            }
        }

        public void Complete(PathManagerException? error)
        {
            if (Interlocked.Exchange(ref _completed, 1) == 0)
            {
                try
                {
                    handler.OnCompleted(error);
                }
                catch (Exception)
                {
                    // As in Deliver.
                }
            }
        }

        public void Dispose()
        {
            owner.Remove(this);
            Complete(null);
        }
    }

    /// <summary>Bit n set for each type in <paramref name="types"/>; every bit for null.</summary>
    public static ulong MaskOf(IReadOnlyCollection<PathManagerEventType>? types)
    {
        if (types is null)
        {
            return ulong.MaxValue;
        }

        ulong mask = 0;
        foreach (PathManagerEventType type in types)
        {
            if ((int)type is >= 0 and < 64)
            {
                mask |= 1UL << (int)type;
            }
        }

        return mask;
    }
}
