using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Interop;
using MptcpAnycast.Netlink;
using Polly;
using Polly.Retry;
using static MptcpAnycast.Interop.MptcpPmConstants;

namespace MptcpAnycast.PathManagement;

/// <summary>
/// A client of the kernel's MPTCP path manager (generic netlink family <c>mptcp_pm</c>): per-connection commands of the
/// userspace path manager (announce, remove, subflows, backup flag), the in-kernel path manager's endpoints and limits,
/// and path-manager events. Every command is async and may be called from many threads at once. Commands need
/// <c>CAP_NET_ADMIN</c>, except reading endpoints and limits.
/// </summary>
/// <remarks>
/// <para>
/// The client's netlink sockets belong to the network namespace of the thread that calls <see cref="Open"/> or
/// <see cref="OpenAsync(CancellationToken)"/>; every command and event applies to that namespace, whatever thread later uses the client.
/// </para>
/// <para>
/// <b>Userspace path manager and the event subscription.</b> While no socket of the namespace is subscribed to the
/// <c>mptcp_pm_events</c> group, the kernel treats the userspace path manager as absent and resets every MP_JOIN, even
/// after a successful ANNOUNCE. So the client joins that group itself before its first userspace-PM command
/// (<see cref="AnnounceAsync"/>, <see cref="RemoveAsync"/>, <see cref="CreateSubflowAsync"/>,
/// <see cref="DestroySubflowAsync"/>, <see cref="SetSubflowBackupAsync"/>) or its first <see cref="SubscribeEvents"/>,
/// and stays subscribed, draining events nobody reads, until it is disposed. Keep the client open for as long as
/// the announced connections should accept joins.
/// </para>
/// <para>
/// <b>When the event socket fails.</b> A receive error on the event socket other than <c>ENOBUFS</c> (which only means
/// lost events and is survived) ends the subscription to the kernel: every event stream then ends with a
/// <see cref="PathManagerException"/>, <see cref="IsSubscribedToEvents"/> turns false, and the socket is closed. The
/// next <see cref="SubscribeEvents"/> (or userspace-PM command) opens a fresh event socket, in the client's own network
/// namespace, and joins the group again. The command socket is not affected.
/// </para>
/// <para>
/// <b>Threads.</b> Commands run on the caller's thread, one at a time, and their tasks are complete when the methods
/// return: the kernel handles a generic-netlink request inside <c>send</c> and has queued the answer before
/// <c>send</c> returns, so the caller reads it at once (typically 10-20 microseconds for ANNOUNCE). Events are read by
/// a thread of the client's own, with blocking receives, so they arrive however busy the thread pool is.
/// </para>
/// <para>
/// The kernel's check is host-wide (netlink keeps one listener bitmap for all namespaces): any subscriber anywhere on the
/// host, such as an <c>ip mptcp monitor</c> left running, hides the trap. Do not rely on that: the client's own
/// subscription is what makes joins work in production.
/// </para>
/// </remarks>
public sealed class PathManagerClient : IDisposable, IAsyncDisposable
{
    private const int ReceiveBufferSize = 64 * 1024;
    private const int ETIMEDOUT = 110;
    private const int EBADMSG = 74;
    private const int EIO = 5;
    private const int EBADF = 9;

    private static readonly ResiliencePipeline s_controlPlane = new ResiliencePipelineBuilder()
        .AddRetry(new RetryStrategyOptions
        {
            ShouldHandle = new PredicateBuilder().Handle<PathManagerException>(e =>
                e.Errno is NetlinkConstants.EAGAIN or NetlinkConstants.EBUSY or NetlinkConstants.ENOBUFS or NetlinkConstants.EINTR),
            MaxRetryAttempts = 3,
            Delay = TimeSpan.FromMilliseconds(50),
            BackoffType = DelayBackoffType.Exponential,
        })
        .Build();

    // Generic-netlink family ids are global (not per namespace) and fixed until the module is reloaded.
    private static (ushort FamilyId, uint EventGroupId)? s_family;

    private readonly PathManagerClientSettings _settings;
    private readonly NetlinkSocket _commands;
    private readonly NetworkNamespace _namespace;
    private readonly Lock _commandGate = new(); // one command at a time on the command socket
    private readonly byte[] _answerBuffer = new byte[ReceiveBufferSize]; // under _commandGate
    private readonly CancellationTokenSource _shutdown = new();
    private readonly Lock _gate = new();
    private volatile PathManagerEventSubscription[] _subscribers = [];
    private NetlinkSocket? _events; // under _gate; null after it failed, until the next JoinEvents opens another
    private Task? _eventLoop;
    private volatile bool _eventsJoined;
    private uint _sequence; // under _commandGate
    private TimeSpan _commandTimeout;
    private long _eventDatagrams;
    private int _disposed;
    private ushort _familyId;
    private uint _eventGroupId;

    private PathManagerClient(PathManagerClientSettings settings)
    {
        _settings = settings;
        _namespace = NetworkNamespace.OfCurrentThread();
        try
        {
            _commands = NetlinkSocket.Open();
            try
            {
                if (settings.CommandReceiveBufferSize is int size)
                {
                    _commands.SetReceiveBuffer(size);
                }

                _events = OpenEventSocket(settings);
            }
            catch
            {
                _commands.Dispose();
                throw;
            }
        }
        catch
        {
            _namespace.Dispose();
            throw;
        }

        _sequence = (uint)Environment.TickCount & 0x7fffffff;
    }

    private delegate int Encoder<TState>(Span<byte> buffer, ushort familyId, uint sequence, TState state);

    /// <summary>How long a command waits for the kernel's answer before it fails with <c>ETIMEDOUT</c>. Default 10 seconds.</summary>
    public TimeSpan CommandTimeout
    {
        get => _commandTimeout;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(value, TimeSpan.Zero);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, TimeSpan.FromDays(1));
            int errno = NativeSocket.SetReceiveTimeout(_commands.Socket.SafeHandle, value);
            if (errno != 0)
            {
                throw new PathManagerException("setsockopt(SO_RCVTIMEO)", errno, null, "cannot set the command timeout");
            }

            _commandTimeout = value;
        }
    }

    /// <summary>
    /// True while the client holds its <c>mptcp_pm_events</c> subscription (see the remarks on the class): false before the
    /// first one, and again after the event socket failed until the next <see cref="SubscribeEvents"/> or userspace-PM command.
    /// </summary>
    public bool IsSubscribedToEvents => _eventsJoined;

    internal ushort FamilyId => _familyId;

    /// <summary>Event datagrams the kernel queued on the event socket and this client read (after the kernel-side filter).</summary>
    internal long EventDatagramsReceived => Interlocked.Read(ref _eventDatagrams);

    /// <summary>The event socket's receive buffer as the kernel set it (twice the requested size), or -1 when there is no event socket.</summary>
    internal int EventReceiveBufferSize
    {
        get
        {
            lock (_gate)
            {
                return _events?.ReceiveBufferSize ?? -1;
            }
        }
    }

    /// <summary>
    /// Opens a client in the calling thread's network namespace and resolves the <c>mptcp_pm</c> family (cached for the
    /// process). Blocks until the kernel answers.
    /// </summary>
    /// <exception cref="PathManagerException">The kernel has no <c>mptcp_pm</c> family (no MPTCP), or netlink failed.</exception>
    public static PathManagerClient Open() => OpenAsync(CancellationToken.None).GetAwaiter().GetResult();

    /// <summary>
    /// Opens a client in the calling thread's network namespace (the sockets are created before this method first
    /// yields) and resolves the <c>mptcp_pm</c> family.
    /// </summary>
    /// <exception cref="PathManagerException">The kernel has no <c>mptcp_pm</c> family (no MPTCP), or netlink failed.</exception>
    public static Task<PathManagerClient> OpenAsync(CancellationToken cancellationToken = default) =>
        OpenAsync(PathManagerClientSettings.Default, cancellationToken);

    internal static async Task<PathManagerClient> OpenAsync(PathManagerClientSettings settings, CancellationToken cancellationToken)
    {
        var client = new PathManagerClient(settings) { CommandTimeout = settings.CommandTimeout };
        try
        {
            bool cacheable = settings.FamilyName == MPTCP_PM_NAME;
            (ushort, uint) family = cacheable && s_family is { } cached
                ? cached
                : await s_controlPlane.ExecuteAsync(
                    static async (c, ct) => await c.ResolveFamilyAsync(ct).ConfigureAwait(false), client, cancellationToken).ConfigureAwait(false);
            if (cacheable)
            {
                s_family = family;
            }

            (client._familyId, client._eventGroupId) = family;
            return client;
        }
        catch
        {
            client.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Userspace PM: announces <paramref name="address"/> to the peer of connection <paramref name="token"/> with
    /// ADD_ADDR (ANNOUNCE). Port 0 announces no port (the peer joins on the connection's port). Something must listen
    /// on the announced address and port: the userspace path manager does not create listeners.
    /// </summary>
    /// <param name="token">The connection token (<see cref="MptcpConnectionInfo.Token"/> of the server socket).</param>
    /// <param name="addressId">The address id, 1 to 255 (0 is the initial subflow's and refused).</param>
    /// <param name="address">The address and optional port to announce.</param>
    /// <param name="cancellationToken">Cancels the wait for the kernel's answer.</param>
    /// <exception cref="PathManagerException">The kernel refused, e.g. "invalid token" or "invalid addr id or flags".</exception>
    public Task AnnounceAsync(uint token, byte addressId, IPEndPoint address, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(address);
        HoldEventSubscription();
        return RunAsync("ANNOUNCE", (token, addressId, address),
            static (b, f, s, st) => MptcpPmMessages.WriteAnnounce(b, f, s, st.token, st.addressId, st.address.Address, st.address.Port),
            dump: false, cancellationToken);
    }

    /// <summary>Userspace PM: withdraws announced address <paramref name="addressId"/> (REMOVE, RM_ADDR to the peer) and closes its subflows.</summary>
    public Task RemoveAsync(uint token, byte addressId, CancellationToken cancellationToken = default)
    {
        HoldEventSubscription();
        return RunAsync("REMOVE", (token, addressId),
            static (b, f, s, st) => MptcpPmMessages.WriteRemove(b, f, s, st.token, st.addressId), dump: false, cancellationToken);
    }

    /// <summary>Userspace PM: opens a subflow from <paramref name="local"/> (address id <paramref name="localId"/>) to <paramref name="remote"/> (SUBFLOW_CREATE).</summary>
    public Task CreateSubflowAsync(uint token, byte localId, IPEndPoint local, IPEndPoint remote, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(local);
        ArgumentNullException.ThrowIfNull(remote);
        HoldEventSubscription();
        return RunAsync("SUBFLOW_CREATE", (token, localId, local, remote),
            static (b, f, s, st) => MptcpPmMessages.WriteSubflowCommand(b, f, MPTCP_PM_CMD_SUBFLOW_CREATE, s, st.token, st.local, st.localId, null, st.remote),
            dump: false, cancellationToken);
    }

    /// <summary>Userspace PM: closes the subflow between <paramref name="local"/> and <paramref name="remote"/> (SUBFLOW_DESTROY); both ports are needed.</summary>
    public Task DestroySubflowAsync(uint token, IPEndPoint local, IPEndPoint remote, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(local);
        ArgumentNullException.ThrowIfNull(remote);
        HoldEventSubscription();
        return RunAsync("SUBFLOW_DESTROY", (token, local, remote),
            static (b, f, s, st) => MptcpPmMessages.WriteSubflowCommand(b, f, MPTCP_PM_CMD_SUBFLOW_DESTROY, s, st.token, st.local, null, null, st.remote),
            dump: false, cancellationToken);
    }

    /// <summary>
    /// Userspace PM: marks the subflow between <paramref name="local"/> and <paramref name="remote"/> as backup or not
    /// (SET_FLAGS; the kernel sends MP_PRIO). Both ports are needed.
    /// </summary>
    public Task SetSubflowBackupAsync(uint token, IPEndPoint local, IPEndPoint remote, bool backup, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(local);
        ArgumentNullException.ThrowIfNull(remote);
        HoldEventSubscription();
        return RunAsync("SET_FLAGS", (token, local, remote, flags: backup ? MPTCP_PM_ADDR_FLAG_BACKUP : 0u),
            static (b, f, s, st) => MptcpPmMessages.WriteSubflowCommand(b, f, MPTCP_PM_CMD_SET_FLAGS, s, st.token, st.local, null, st.flags, st.remote),
            dump: false, cancellationToken);
    }

    /// <summary>In-kernel PM: every endpoint of the namespace (GET_ADDR dump), as <c>ip mptcp endpoint show</c>.</summary>
    public async Task<IReadOnlyList<MptcpEndpoint>> GetEndpointsAsync(CancellationToken cancellationToken = default)
    {
        List<byte[]> replies = await RunAsync("GET_ADDR", 0,
            static (b, f, s, _) => MptcpPmMessages.WriteBare(b, f, MPTCP_PM_CMD_GET_ADDR, s, dump: true), dump: true, cancellationToken).ConfigureAwait(false);
        return Decode("GET_ADDR", replies, static p => MptcpPmMessages.ReadEndpoint(p));
    }

    /// <summary>In-kernel PM: the endpoint with id <paramref name="id"/> (GET_ADDR).</summary>
    /// <exception cref="PathManagerException">No such endpoint (the kernel says "address not found"), or another failure.</exception>
    public async Task<MptcpEndpoint> GetEndpointAsync(byte id, CancellationToken cancellationToken = default)
    {
        List<byte[]> replies = await RunAsync("GET_ADDR", id,
            static (b, f, s, i) => MptcpPmMessages.WriteEndpointById(b, f, MPTCP_PM_CMD_GET_ADDR, s, i, null), dump: false, cancellationToken).ConfigureAwait(false);
        IReadOnlyList<MptcpEndpoint> endpoints = Decode("GET_ADDR", replies, static p => MptcpPmMessages.ReadEndpoint(p));
        return endpoints.Count > 0
            ? endpoints[0]
            : throw new PathManagerException("GET_ADDR", EBADMSG, null, "the kernel acknowledged without sending the endpoint");
    }

    /// <summary>
    /// In-kernel PM: adds an endpoint (ADD_ADDR) and returns its id: <see cref="MptcpEndpoint.Id"/> when given, else the
    /// id the kernel picked (read back from the endpoint list, since the kernel does not report it).
    /// </summary>
    public async Task<byte> AddEndpointAsync(MptcpEndpoint endpoint, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        ArgumentNullException.ThrowIfNull(endpoint.Address);
        ArgumentOutOfRangeException.ThrowIfNegative(endpoint.Port);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(endpoint.Port, ushort.MaxValue);
        await RunAsync("ADD_ADDR", endpoint,
            static (b, f, s, e) => MptcpPmMessages.WriteAddEndpoint(b, f, s, e), dump: false, cancellationToken).ConfigureAwait(false);
        if (endpoint.Id != 0)
        {
            return endpoint.Id;
        }

        IPAddress wanted = endpoint.Address.IsIPv4MappedToIPv6 ? endpoint.Address.MapToIPv4() : endpoint.Address;
        foreach (MptcpEndpoint e in await GetEndpointsAsync(cancellationToken).ConfigureAwait(false))
        {
            if (e.Address.Equals(wanted) && e.Port == endpoint.Port)
            {
                return e.Id;
            }
        }

        throw new PathManagerException("ADD_ADDR", NetlinkConstants.ENOENT, null, "the kernel accepted the endpoint but does not list it");
    }

    /// <summary>In-kernel PM: deletes endpoint <paramref name="id"/> (DEL_ADDR); the kernel sends RM_ADDR where it was announced.</summary>
    public Task DeleteEndpointAsync(byte id, CancellationToken cancellationToken = default) =>
        RunAsync("DEL_ADDR", id, static (b, f, s, i) => MptcpPmMessages.WriteEndpointById(b, f, MPTCP_PM_CMD_DEL_ADDR, s, i, null), dump: false, cancellationToken);

    /// <summary>In-kernel PM: deletes every endpoint (FLUSH_ADDRS).</summary>
    public Task FlushEndpointsAsync(CancellationToken cancellationToken = default) =>
        RunAsync("FLUSH_ADDRS", 0, static (b, f, s, _) => MptcpPmMessages.WriteBare(b, f, MPTCP_PM_CMD_FLUSH_ADDRS, s, dump: false), dump: false, cancellationToken);

    /// <summary>
    /// In-kernel PM: changes endpoint <paramref name="id"/>'s flags (SET_FLAGS, as <c>ip mptcp endpoint change</c>).
    /// The kernel changes only <see cref="MptcpEndpointFlags.Backup"/> and <see cref="MptcpEndpointFlags.Fullmesh"/>.
    /// </summary>
    public Task SetEndpointFlagsAsync(byte id, MptcpEndpointFlags flags, CancellationToken cancellationToken = default) =>
        RunAsync("SET_FLAGS", (id, flags), static (b, f, s, st) => MptcpPmMessages.WriteEndpointById(b, f, MPTCP_PM_CMD_SET_FLAGS, s, st.id, (uint)st.flags),
            dump: false, cancellationToken);

    /// <summary>In-kernel PM: the namespace's limits (GET_LIMITS), as <c>ip mptcp limits show</c>.</summary>
    public async Task<MptcpLimits> GetLimitsAsync(CancellationToken cancellationToken = default)
    {
        List<byte[]> replies = await RunAsync("GET_LIMITS", 0,
            static (b, f, s, _) => MptcpPmMessages.WriteBare(b, f, MPTCP_PM_CMD_GET_LIMITS, s, dump: false), dump: false, cancellationToken).ConfigureAwait(false);
        IReadOnlyList<MptcpLimits> limits = Decode("GET_LIMITS", replies, static p => MptcpPmMessages.ReadLimits(p));
        return limits.Count > 0
            ? limits[0]
            : throw new PathManagerException("GET_LIMITS", EBADMSG, null, "the kernel acknowledged without sending the limits");
    }

    /// <summary>In-kernel PM: sets the namespace's limits (SET_LIMITS); the kernel refuses values above 8.</summary>
    public Task SetLimitsAsync(MptcpLimits limits, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(limits);
        return RunAsync("SET_LIMITS", limits, static (b, f, s, l) => MptcpPmMessages.WriteSetLimits(b, f, s, l), dump: false, cancellationToken);
    }

    /// <summary>
    /// Starts reading path-manager events of the client's namespace into a new bounded buffer of
    /// <paramref name="capacity"/> events. Joins <c>mptcp_pm_events</c> (needs <c>CAP_NET_ADMIN</c>) if the client has
    /// not yet. A slow reader never blocks the kernel socket: what does not fit is dropped and counted.
    /// </summary>
    /// <param name="capacity">How many events may wait for the reader.</param>
    /// <param name="types">Only these event types (null: all). Events of other types are not even decoded, which
    /// matters at thousands of connections per second. <see cref="PathManagerEventType.EventsLost"/> markers always come.</param>
    /// <remarks>If the event socket fails, the stream ends with a <see cref="PathManagerException"/>; subscribe again
    /// (this method) to go on, and reconcile what happened in between (see the remarks on the class).</remarks>
    /// <exception cref="PathManagerException">Joining the event group failed (EPERM: no <c>CAP_NET_ADMIN</c>), or a
    /// replacement event socket could not be opened.</exception>
    public PathManagerEventSubscription SubscribeEvents(int capacity = 4096, IReadOnlyCollection<PathManagerEventType>? types = null)
        => Subscribe(capacity, types, deliverOnEventThread: false);

    /// <summary>
    /// <see cref="SubscribeEvents"/> for a reader that never blocks, such as the transport's announcer: its continuation
    /// runs on the event thread itself, so an event is handled as soon as the kernel delivers it, without waiting for a
    /// thread-pool thread.
    /// </summary>
    internal PathManagerEventSubscription SubscribeEventsOnEventThread(int capacity, IReadOnlyCollection<PathManagerEventType>? types)
        => Subscribe(capacity, types, deliverOnEventThread: true);

    private PathManagerEventSubscription Subscribe(int capacity, IReadOnlyCollection<PathManagerEventType>? types, bool deliverOnEventThread)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        var subscription = new PathManagerEventSubscription(this, capacity, types, deliverOnEventThread);
        lock (_gate)
        {
            // One step under the gate: a socket failure is either before (and this opens a fresh socket) or after
            // (and it ends this stream too), never in between.
            JoinEvents();
            _subscribers = [.. _subscribers, subscription];
            FilterEvents();
        }

        if (_disposed != 0)
        {
            subscription.Complete();
        }

        return subscription;
    }

    /// <summary>Closes the sockets (ending the event subscription) and ends every event stream; later commands fail.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _shutdown.Cancel();
        _commands.Dispose();
        lock (_gate)
        {
            _events?.Dispose();
            _events = null;
        }

        _namespace.Dispose();

        PathManagerEventSubscription[] subscribers;
        lock (_gate)
        {
            subscribers = _subscribers;
            _subscribers = [];
        }

        foreach (PathManagerEventSubscription subscriber in subscribers)
        {
            subscriber.Complete();
        }
    }

    /// <summary>Disposes and waits (at most a few seconds) for the event thread to end.</summary>
    public async ValueTask DisposeAsync()
    {
        Dispose();
        Task? eventLoop;
        lock (_gate)
        {
            eventLoop = _eventLoop;
        }

        if (eventLoop is not null)
        {
            await Task.WhenAny(eventLoop, Task.Delay(TimeSpan.FromSeconds(5))).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Test hook: closes the event socket behind the client's back, as when its descriptor is closed elsewhere. Within
    /// one receive timeout (<see cref="EventPollInterval"/>) the event thread finds it gone; the client is not shutting
    /// down, so it handles this as a failed event socket (EBADF), unlike <see cref="Dispose"/>.
    /// </summary>
    internal void CloseEventSocketBehindTheClientsBack()
    {
        lock (_gate)
        {
            _events?.Socket.Dispose();
        }
    }

    internal void Unsubscribe(PathManagerEventSubscription subscription)
    {
        lock (_gate)
        {
            _subscribers = Array.FindAll(_subscribers, s => !ReferenceEquals(s, subscription));
            FilterEvents();
        }
    }

    /// <summary>
    /// Has the kernel queue only the event types some subscriber wants (none while the subscription is only held for
    /// the userspace path manager: membership of the group is what its check looks at, not what is queued). Called
    /// under the gate whenever the subscribers or the socket change. Best effort: without the filter every event is
    /// queued and the subscribers' own filters still apply.
    /// </summary>
    private void FilterEvents()
    {
        ulong wanted = 0;
        foreach (PathManagerEventSubscription subscriber in _subscribers)
        {
            wanted |= subscriber.WantedTypes;
        }

        _events?.FilterGenericCommands(wanted >> 32 != 0 ? uint.MaxValue : (uint)wanted);
    }

    private void HoldEventSubscription()
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (_settings.HoldEventSubscription)
        {
            JoinEvents();
        }
    }

    private void JoinEvents()
    {
        if (_eventsJoined)
        {
            return;
        }

        lock (_gate)
        {
            if (_eventsJoined)
            {
                return;
            }

            ObjectDisposedException.ThrowIf(_disposed != 0, this);
            if (_eventGroupId == 0)
            {
                throw new PathManagerException("subscribe mptcp_pm_events", NetlinkConstants.ENOENT, null,
                    "the kernel's mptcp_pm family has no mptcp_pm_events multicast group");
            }

            // After a failure the old socket is gone: open its replacement where the client was opened.
            NetlinkSocket socket = _events ??= _namespace.Run(() => OpenEventSocket(_settings));
            FilterEvents();
            int errno = socket.JoinGroup(_eventGroupId);
            if (errno != 0)
            {
                throw new PathManagerException("subscribe mptcp_pm_events", errno, null);
            }

            _eventLoop = StartEventThread(socket);
            _eventsJoined = true;
        }
    }

    private static NetlinkSocket OpenEventSocket(PathManagerClientSettings settings)
    {
        NetlinkSocket socket = NetlinkSocket.Open();
        if (settings.EventReceiveBufferSize is int size)
        {
            socket.SetReceiveBuffer(size);
        }

        return socket;
    }

    private async Task<(ushort, uint)> ResolveFamilyAsync(CancellationToken cancellationToken)
    {
        List<byte[]> replies;
        try
        {
            replies = await RunAsync("CTRL_CMD_GETFAMILY", _settings.FamilyName,
                static (b, _, s, name) => MptcpPmMessages.WriteGetFamily(b, s, name), dump: false, cancellationToken, resolving: true).ConfigureAwait(false);
        }
        catch (PathManagerException ex) when (ex.Errno == NetlinkConstants.ENOENT)
        {
            throw new PathManagerException("CTRL_CMD_GETFAMILY", ex.Errno, ex.KernelMessage,
                $"the kernel has no '{_settings.FamilyName}' generic netlink family: MPTCP is not available here (Linux 5.7+ built with CONFIG_MPTCP is needed)", ex);
        }

        IReadOnlyList<(ushort, uint)> families = Decode("CTRL_CMD_GETFAMILY", replies, static p => MptcpPmMessages.ReadFamily(p, MPTCP_PM_EV_GRP_NAME));
        return families.Count > 0
            ? families[0]
            : throw new PathManagerException("CTRL_CMD_GETFAMILY", EBADMSG, null, "the kernel acknowledged without describing the family");
    }

    private static List<T> Decode<T>(string command, List<byte[]> replies, Func<byte[], T> read)
    {
        var result = new List<T>(replies.Count);
        try
        {
            foreach (byte[] reply in replies)
            {
                result.Add(read(reply));
            }
        }
        catch (NetlinkFormatException ex)
        {
            throw new PathManagerException(command, EBADMSG, null, $"malformed reply: {ex.Message}", ex);
        }

        return result;
    }

    /// <summary>
    /// Runs one command and returns its answer as a completed (or faulted) task. Commands are synchronous exchanges on
    /// the command socket, one at a time: the kernel handles a generic-netlink request inside <c>send</c> and queues
    /// its whole answer before <c>send</c> returns (a dump queues its first part, and the next ones as they are read),
    /// so the caller reads its own answer at once. No thread switch, no answer waiting in a queue for a reader that
    /// the thread pool has not scheduled yet, and the queue never holds more than one answer, so a burst of commands
    /// cannot overflow it.
    /// </summary>
    private Task<List<byte[]>> RunAsync<TState>(string command, TState state, Encoder<TState> encode, bool dump,
        CancellationToken cancellationToken, bool resolving = false)
    {
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            return Task.FromResult(Exchange(command, state, encode, resolving));
        }
        catch (Exception ex) when (ex is PathManagerException or ObjectDisposedException or InvalidOperationException or OperationCanceledException)
        {
            return ex is OperationCanceledException canceled
                ? Task.FromCanceled<List<byte[]>>(canceled.CancellationToken)
                : Task.FromException<List<byte[]>>(ex);
        }
    }

    private List<byte[]> Exchange<TState>(string command, TState state, Encoder<TState> encode, bool resolving)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (!resolving && _familyId == 0)
        {
            throw new InvalidOperationException("the mptcp_pm family is not resolved");
        }

        lock (_commandGate)
        {
            try
            {
                uint sequence = ++_sequence;
                Span<byte> request = stackalloc byte[MptcpPmMessages.MaxRequestSize];
                int length = encode(request, _familyId, sequence, state);
                SafeSocketHandle handle = _commands.Socket.SafeHandle;
                int sent = NativeSocket.Send(handle, request[..length]);
                if (sent < 0)
                {
                    throw new PathManagerException(command, -sent, null);
                }

                var answer = new Answer(command, sequence);
                while (!answer.IsComplete)
                {
                    int received = NativeSocket.Receive(handle, _answerBuffer);
                    if (received < 0)
                    {
                        throw -received switch
                        {
                            NetlinkConstants.EAGAIN => new PathManagerException(command, ETIMEDOUT, null,
                                $"no answer from the kernel within {CommandTimeout.TotalSeconds:0.#} s"),
                            NetlinkConstants.ENOBUFS => new PathManagerException(command, NetlinkConstants.ENOBUFS, null,
                                "the kernel's answer did not fit the command socket's receive buffer and was dropped; the command may or may not have taken effect"),
                            _ => new PathManagerException(command, -received, null),
                        };
                    }

                    answer.Read(_answerBuffer.AsSpan(0, received));
                }

                return answer.Result();
            }
            catch (ObjectDisposedException)
            {
                ObjectDisposedException.ThrowIf(true, this); // the socket was closed by Dispose
                throw;
            }
        }
    }

    /// <summary>
    /// Reads events on a thread of its own, with blocking receives: the kernel wakes it directly, whatever the thread
    /// pool is busy with (at thousands of connections per second an async receive loop trailed the kernel by tens of
    /// milliseconds). The receive times out every <see cref="EventPollInterval"/> to notice shutdown, because closing
    /// a netlink socket does not wake a thread blocked on it. Returns a task that completes when the thread ends.
    /// </summary>
    private Task StartEventThread(NetlinkSocket socket)
    {
        var ended = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            try
            {
                int errno = ReceiveEvents(socket);
                if (errno != 0)
                {
                    OnEventSocketFailed(socket, errno);
                }
            }
            finally
            {
                ended.TrySetResult();
            }
        })
        {
            IsBackground = true,
            Name = "mptcp_pm events",
        };
        thread.Start();
        return ended.Task;
    }

    private static readonly TimeSpan EventPollInterval = TimeSpan.FromMilliseconds(200);

    /// <summary>The event thread's loop. Returns 0 on the client's own shutdown, else the errno the socket failed with.</summary>
    private int ReceiveEvents(NetlinkSocket socket)
    {
        byte[] buffer = new byte[ReceiveBufferSize];
        try
        {
            int errno = NativeSocket.SetReceiveTimeout(socket.Socket.SafeHandle, EventPollInterval);
            if (errno != 0)
            {
                return errno;
            }

            // ENOBUFS says the kernel started dropping events; it goes on dropping them, without telling again, until
            // the queue has been read empty. So the loss is reported only then (reading without waiting meanwhile),
            // and whoever reconciles from the sockets does it after the last dropped event, not in the middle.
            bool dropping = false;
            while (!_shutdown.IsCancellationRequested)
            {
                int received = NativeSocket.Receive(socket.Socket.SafeHandle, buffer, dontWait: dropping);
                if (received >= 0)
                {
                    PublishEvents(buffer.AsSpan(0, received));
                }
                else if (-received == NetlinkConstants.ENOBUFS)
                {
                    dropping = true;
                }
                else if (-received == NetlinkConstants.EAGAIN)
                {
                    if (dropping)
                    {
                        dropping = false;
                        ReportLoss(); // the queue is empty: the kernel queues events again
                    }
                }
                else if (!_shutdown.IsCancellationRequested)
                {
                    return -received;
                }
            }

            return 0;
        }
        catch (ObjectDisposedException)
        {
            return _shutdown.IsCancellationRequested ? 0 : EBADF; // closed behind our back: a failure, not a shutdown
        }
    }

    /// <summary>
    /// The event socket failed (not our shutdown): the kernel no longer counts us as subscribed. Drop the socket so the
    /// next <see cref="JoinEvents"/> opens a fresh one, and end every stream with the error so no reader waits forever.
    /// </summary>
    private void OnEventSocketFailed(NetlinkSocket socket, int errno)
    {
        PathManagerEventSubscription[] subscribers;
        lock (_gate)
        {
            if (!ReferenceEquals(_events, socket))
            {
                return;
            }

            _events = null;
            _eventsJoined = false;
            subscribers = _subscribers;
            _subscribers = [];
        }

        socket.Dispose();
        var error = new PathManagerException("receive mptcp_pm_events", errno, null,
            "the event socket failed, so this event stream has ended and the client is no longer subscribed to path-manager "
            + "events (the userspace path manager resets joins while nothing is subscribed); call SubscribeEvents again "
            + "and reconcile what happened meanwhile");
        foreach (PathManagerEventSubscription subscriber in subscribers)
        {
            subscriber.Complete(error);
        }
    }

    private void ReportLoss()
    {
        foreach (PathManagerEventSubscription subscriber in _subscribers)
        {
            subscriber.ReportLoss();
        }
    }

    private void PublishEvents(ReadOnlySpan<byte> datagram)
    {
        Interlocked.Increment(ref _eventDatagrams);
        PathManagerEventSubscription[] subscribers = _subscribers;
        if (subscribers.Length == 0)
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
                PathManagerEvent? pathManagerEvent = null;
                foreach (PathManagerEventSubscription subscriber in subscribers)
                {
                    if (subscriber.Wants(type))
                    {
                        pathManagerEvent ??= MptcpPmMessages.ReadEvent(message.Payload);
                        subscriber.Publish(pathManagerEvent);
                    }
                }
            }
        }
        catch (NetlinkFormatException)
        {
            ReportLoss(); // the rest of the datagram cannot be framed
        }
    }

    /// <summary>
    /// The answer to one command, as its datagrams are read: data messages, then an ACK, an error or NLMSG_DONE.
    /// Messages with another sequence number (the late answer to a command that timed out) are skipped.
    /// </summary>
    private sealed class Answer(string command, uint sequence)
    {
        private static readonly List<byte[]> NoData = [];
        private List<byte[]>? _data;
        private PathManagerException? _error;

        public bool IsComplete { get; private set; }

        public List<byte[]> Result() => _error is null ? _data ?? NoData : throw _error;

        public void Read(ReadOnlySpan<byte> datagram)
        {
            var reader = new NetlinkMessageReader(datagram);
            try
            {
                while (!IsComplete && reader.TryRead(out NetlinkMessage message))
                {
                    if (message.Sequence == sequence)
                    {
                        Accept(message);
                    }
                }
            }
            catch (NetlinkFormatException ex)
            {
                Fail(new PathManagerException(command, EBADMSG, null, $"malformed reply: {ex.Message}", ex));
            }
        }

        private void Accept(NetlinkMessage message)
        {
            switch (message.Type)
            {
                case NetlinkConstants.NLMSG_ERROR:
                    NetlinkError error = NetlinkError.Parse(message.Payload, message.Flags);
                    Complete(error.Errno, error.Message);
                    break;
                case NetlinkConstants.NLMSG_DONE:
                    Complete(NetlinkError.ReadDoneErrno(message.Payload), null);
                    break;
                case NetlinkConstants.NLMSG_NOOP or NetlinkConstants.NLMSG_OVERRUN:
                    break;
                default:
                    (_data ??= []).Add(message.Payload.ToArray());
                    break;
            }
        }

        private void Complete(int errno, string? kernelMessage)
        {
            if (errno != 0)
            {
                _error = new PathManagerException(command, errno, kernelMessage);
            }

            IsComplete = true;
        }

        private void Fail(PathManagerException error)
        {
            _error = error;
            IsComplete = true;
        }
    }
}
