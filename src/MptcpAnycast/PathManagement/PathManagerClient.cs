using MptcpAnycast.Interop;
using MptcpAnycast.Netlink;

namespace MptcpAnycast.PathManagement;

/// <summary>
/// A client of the kernel's MPTCP path manager (generic netlink family <c>mptcp_pm</c>): per-connection commands of the
/// userspace path manager (announce, remove, subflows, backup flag), the in-kernel path manager's endpoints and limits,
/// and path-manager events. Commands may be called from many threads at once. Commands need <c>CAP_NET_ADMIN</c>,
/// except reading endpoints and limits.
/// </summary>
/// <remarks>
/// <para>
/// The client's netlink sockets belong to the network namespace of the thread that calls <see cref="Open()"/> or
/// <see cref="OpenAsync(CancellationToken)"/>; every command and event applies to that namespace, whatever thread later
/// uses the client (see <see cref="NetworkNamespace"/> to open one for another namespace).
/// </para>
/// <para>
/// <b>Commands are synchronous exchanges.</b> They run on the caller's thread, one at a time, and their tasks are
/// complete when the methods return: the kernel handles a generic-netlink request inside <c>send</c> and has queued the
/// answer before <c>send</c> returns (typically 10-20 microseconds for ANNOUNCE). A command's cancellation token is looked
/// at before it is sent; the wait for the answer is bounded by <see cref="CommandTimeout"/>, and only by it.
/// </para>
/// <para>
/// <b>Userspace path manager and the event subscription.</b> While no socket of the namespace is subscribed to the
/// <c>mptcp_pm_events</c> group, the kernel treats the userspace path manager as absent and resets every MP_JOIN, even
/// after a successful ANNOUNCE. So the client joins that group itself before its first userspace-PM command
/// (<see cref="AnnounceAsync"/>, <see cref="RemoveAsync"/>, <see cref="CreateSubflowAsync"/>,
/// <see cref="DestroySubflowAsync"/>, <see cref="SetSubflowBackupAsync"/>) or its first <c>SubscribeEvents</c>, and
/// stays subscribed, draining events nobody reads, until it is disposed. Keep the client open for as long as the
/// announced connections should accept joins. The kernel's check is host-wide (netlink keeps one listener bitmap for
/// all namespaces): any subscriber anywhere on the host, such as an <c>ip mptcp monitor</c> left running, hides the
/// trap. Do not rely on that.
/// </para>
/// <para>
/// <b>Events</b> are read by a thread of the client's own, with blocking receives, so they arrive however busy the
/// thread pool is; handlers (<see cref="IPathManagerEventHandler"/>) run on that thread. A receive error other than
/// <c>ENOBUFS</c> (which only means lost events, reported as <see cref="PathManagerEventType.EventsLost"/>) ends the
/// subscription: every handler's <see cref="IPathManagerEventHandler.OnCompleted"/> gets a <see cref="PathManagerException"/>,
/// <see cref="IsSubscribedToEvents"/> turns false, and the next <c>SubscribeEvents</c> (or userspace-PM command) opens a
/// fresh event socket in the client's namespace. The command socket is not affected.
/// </para>
/// </remarks>
public sealed partial class PathManagerClient : IDisposable, IAsyncDisposable
{
    private readonly PathManagerClientOptions _options;
    private readonly NetlinkCommandChannel _commands;
    private readonly NetworkNamespace _namespace;
    private MptcpPmFamily _family;
    private int _disposed;

    private PathManagerClient(PathManagerClientOptions options, NetworkNamespace ns, NetlinkCommandChannel commands, NetlinkSocket spareEventSocket)
    {
        _options = options;
        _namespace = ns;
        _commands = commands;
        _spareEventSocket = spareEventSocket;
    }

    /// <summary>The namespace the client's commands apply to (<see cref="NetworkNamespace.Id"/>).</summary>
    internal string NamespaceId => _namespace.Id;

    private delegate int Encoder<TState>(Span<byte> buffer, ushort familyId, uint sequence, TState state);

    /// <summary>How long a command waits for the kernel's answer before it fails with <c>ETIMEDOUT</c>. Default 10 seconds.</summary>
    public TimeSpan CommandTimeout
    {
        get => _commands.Timeout;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(value, TimeSpan.Zero);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, TimeSpan.FromDays(1));
            try
            {
                _commands.Timeout = value;
            }
            catch (NetlinkException ex)
            {
                throw PathManagerException.From(ex, "set the command timeout");
            }
        }
    }

    internal ushort FamilyId => _family.FamilyId;

    /// <summary>
    /// Opens a client in the calling thread's network namespace and resolves the <c>mptcp_pm</c> family (cached for the
    /// process). Blocks until the kernel answers.
    /// </summary>
    /// <exception cref="PathManagerException">The kernel has no <c>mptcp_pm</c> family (no MPTCP), or netlink failed.</exception>
    public static PathManagerClient Open() => Open(PathManagerClientOptions.Default);

    /// <inheritdoc cref="Open()"/>
    /// <param name="options">Timeouts and buffers.</param>
    public static PathManagerClient Open(PathManagerClientOptions options) => Open(options, CancellationToken.None);

    /// <summary>
    /// Opens a client in the calling thread's network namespace and resolves the <c>mptcp_pm</c> family. The work is
    /// done before this method returns (netlink answers at once); the task is complete.
    /// </summary>
    /// <exception cref="PathManagerException">The kernel has no <c>mptcp_pm</c> family (no MPTCP), or netlink failed.</exception>
    public static Task<PathManagerClient> OpenAsync(CancellationToken cancellationToken) =>
        OpenAsync(PathManagerClientOptions.Default, cancellationToken);

    /// <inheritdoc cref="OpenAsync(CancellationToken)"/>
    /// <param name="options">Timeouts and buffers; null for <see cref="PathManagerClientOptions.Default"/>.</param>
    /// <param name="cancellationToken">Looked at before each try of the family lookup.</param>
    public static Task<PathManagerClient> OpenAsync(PathManagerClientOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= PathManagerClientOptions.Default;
        try
        {
            return Task.FromResult(Open(options, cancellationToken));
        }
        catch (OperationCanceledException ex)
        {
            return Task.FromCanceled<PathManagerClient>(ex.CancellationToken);
        }
        catch (Exception ex) when (ex is PathManagerException or ArgumentException)
        {
            return Task.FromException<PathManagerClient>(ex);
        }
    }

    private static PathManagerClient Open(PathManagerClientOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        NetworkNamespace ns = NetworkNamespace.OfCurrentThread();
        NetlinkCommandChannel? commands = null;
        NetlinkSocket? spare = null;
        try
        {
            commands = new NetlinkCommandChannel(NetlinkSocket.Open(), options.CommandTimeout);
            if (options.CommandReceiveBufferSize is int size)
            {
                commands.SetReceiveBuffer(size);
            }

            // Made now, in this thread's namespace, so the first subscription needs no setns.
            spare = NetlinkSocket.Open();
            if (options.EventReceiveBufferSize is int eventBuffer)
            {
                spare.SetReceiveBuffer(eventBuffer);
            }

            var client = new PathManagerClient(options, ns, commands, spare);
            try
            {
                client._family = MptcpPmFamily.Resolve(commands, options.FamilyName, cancellationToken);
                return client;
            }
            catch
            {
                client.Dispose();
                throw;
            }
        }
        catch (NetlinkException ex)
        {
            spare?.Dispose();
            commands?.Dispose();
            ns.Dispose();
            throw PathManagerException.From(ex, ex.Operation);
        }
    }

    /// <summary>Closes the sockets (ending the event subscription) and ends every event stream; later commands fail.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _commands.Dispose();
        CloseEvents();
        _namespace.Dispose();
    }

    /// <summary>Disposes and waits (at most a few seconds) for the event thread to end.</summary>
    public async ValueTask DisposeAsync()
    {
        Task ended = EventThreadEnded;
        Dispose();
        await Task.WhenAny(ended, Task.Delay(TimeSpan.FromSeconds(5))).ConfigureAwait(false);
    }

    internal static List<T> Decode<T>(string command, List<byte[]> replies, Func<byte[], T> read)
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
            throw new PathManagerException(command, Errno.EBADMSG, null, $"malformed reply: {ex.Message}", ex);
        }

        return result;
    }

    /// <summary>Runs one command and returns its answer as a completed (or faulted, or cancelled) task.</summary>
    private Task<List<byte[]>> RunAsync<TState>(string command, TState state, Encoder<TState> encode, CancellationToken cancellationToken)
    {
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            return Task.FromResult(Run(command, state, encode));
        }
        catch (OperationCanceledException ex)
        {
            return Task.FromCanceled<List<byte[]>>(ex.CancellationToken);
        }
        catch (Exception ex) when (ex is PathManagerException or ObjectDisposedException)
        {
            return Task.FromException<List<byte[]>>(ex);
        }
    }

    private List<byte[]> Run<TState>(string command, TState state, Encoder<TState> encode)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        try
        {
            return _commands.Exchange(command, (Family: _family.FamilyId, State: state, Encode: encode),
                static (buffer, sequence, x) => x.Encode(buffer, x.Family, sequence, x.State));
        }
        catch (NetlinkException ex)
        {
            throw PathManagerException.From(ex, command);
        }
        catch (ObjectDisposedException)
        {
            ObjectDisposedException.ThrowIf(true, this);
            throw;
        }
    }
}
