using System.Runtime.ExceptionServices;
using Microsoft.Win32.SafeHandles;
using MptcpAnycast.Interop;

namespace MptcpAnycast;

/// <summary>
/// A Linux network namespace, held open so that sockets can be created in it from any thread. A socket belongs for its
/// whole life to the namespace of the thread that created it, so an MPTCP socket or a
/// <see cref="PathManagement.PathManagerClient"/> for another namespace is made inside <see cref="Run{T}(Func{T})"/>.
/// </summary>
/// <example>
/// <code>
/// using NetworkNamespace pop = NetworkNamespace.Open("pop-a");           // as made by 'ip netns add pop-a'
/// using PathManagerClient pm = pop.Run(PathManagerClient.Open);           // its netlink sockets live in pop-a
/// </code>
/// </example>
public sealed class NetworkNamespace : IDisposable
{
    private const string ThreadNamespacePath = "/proc/thread-self/ns/net";

    private readonly SafeFileHandle? _handle;

    private NetworkNamespace(SafeFileHandle? handle, string id, string description)
    {
        _handle = handle;
        Id = id;
        _description = description;
    }

    private readonly string _description;

    /// <summary>
    /// The kernel's name for the namespace, <c>net:[INODE]</c> as the links in <c>/proc/PID/ns/net</c> show it; equal for
    /// every handle on the same namespace. Empty when <c>/proc</c> is not mounted.
    /// </summary>
    public string Id { get; }

    /// <summary>The namespace that <c>ip netns add NAME</c> made (<c>/var/run/netns/NAME</c>).</summary>
    /// <exception cref="ArgumentException"><paramref name="name"/> is empty or not a plain file name.</exception>
    /// <exception cref="IOException">There is no such namespace.</exception>
    public static NetworkNamespace Open(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name.Contains('/', StringComparison.Ordinal) || name is "." or "..")
        {
            throw new ArgumentException($"'{name}' is not a network namespace name (as 'ip netns list' prints them)", nameof(name));
        }

        string path = $"/var/run/netns/{name}";
        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        }
        catch (FileNotFoundException ex)
        {
            throw new IOException($"there is no network namespace '{name}' ({path} does not exist; 'ip netns list' shows those that do)", ex);
        }

        return new NetworkNamespace(handle, IdOf(handle), $"'{name}'");
    }

    /// <summary>The namespace the calling thread is in now. Without <c>/proc</c>, one that runs everything where it is called.</summary>
    public static NetworkNamespace OfCurrentThread()
    {
        string? id = CurrentThreadId();
        if (id is null)
        {
            return new NetworkNamespace(null, "", "of this thread");
        }

        try
        {
            return new NetworkNamespace(File.OpenHandle(ThreadNamespacePath, FileMode.Open, FileAccess.Read), id, id);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return new NetworkNamespace(null, "", "of this thread");
        }
    }

    /// <summary>
    /// Runs <paramref name="create"/> in this namespace and returns its result: on the calling thread when it is
    /// already there (no privilege needed), else on a short-lived thread that enters the namespace first (<c>setns</c>,
    /// which needs <c>CAP_SYS_ADMIN</c>). Exceptions from <paramref name="create"/> reach the caller unchanged.
    /// </summary>
    /// <exception cref="UnauthorizedAccessException">The namespace cannot be entered (no <c>CAP_SYS_ADMIN</c>).</exception>
    public T Run<T>(Func<T> create)
    {
        ArgumentNullException.ThrowIfNull(create);
        ObjectDisposedException.ThrowIf(_handle?.IsClosed == true, this);
        if (_handle is null || CurrentThreadId() == Id)
        {
            return create();
        }

        T? result = default;
        ExceptionDispatchInfo? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                Enter();
                result = create();
            }
            catch (Exception ex)
            {
                error = ExceptionDispatchInfo.Capture(ex);
            }
        })
        {
            IsBackground = true,
            Name = $"netns {Id}",
        };
        thread.Start();
        thread.Join();
        error?.Throw();
        return result!;
    }

    /// <summary>Runs <paramref name="action"/> in this namespace (see <see cref="Run{T}(Func{T})"/>).</summary>
    public void Run(Action action)
    {
        ArgumentNullException.ThrowIfNull(action);
        Run(() =>
        {
            action();
            return true;
        });
    }

    /// <summary>Closes the handle; sockets already made in the namespace keep working.</summary>
    public void Dispose() => _handle?.Dispose();

    /// <inheritdoc />
    public override string ToString() => $"network namespace {_description}";

    private void Enter()
    {
        bool added = false;
        _handle!.DangerousAddRef(ref added);
        try
        {
            int errno = NativeNamespace.Enter((int)_handle.DangerousGetHandle());
            if (errno != 0)
            {
                throw new UnauthorizedAccessException(
                    $"cannot enter the {this}: {NativeSocket.DescribeErrno(errno)} (errno {errno}); run on a thread that is in it, or grant CAP_SYS_ADMIN");
            }
        }
        finally
        {
            if (added)
            {
                _handle.DangerousRelease();
            }
        }
    }

    /// <summary>The calling thread's namespace as <c>net:[inode]</c>, or null without <c>/proc</c>.</summary>
    private static string? CurrentThreadId() => LinkTarget(ThreadNamespacePath);

    private static string IdOf(SafeFileHandle handle) =>
        LinkTarget($"/proc/self/fd/{handle.DangerousGetHandle()}") ?? "";

    private static string? LinkTarget(string path)
    {
        try
        {
            return new FileInfo(path).LinkTarget;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
