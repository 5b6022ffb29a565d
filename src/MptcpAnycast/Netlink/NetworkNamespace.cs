using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace MptcpAnycast.Netlink;

/// <summary>
/// The network namespace a thread was in when this was made, held open (<c>/proc/thread-self/ns/net</c>), so that a
/// socket can be created there again later from any thread. A socket belongs to the namespace of the thread that
/// creates it; a path-manager client opened on a thread that had entered a namespace must make its replacement event
/// socket in that namespace, not in the one of whatever thread asks for it.
/// </summary>
internal sealed partial class NetworkNamespace : IDisposable
{
    private const int CLONE_NEWNET = 0x40000000;
    private const string ThreadNamespacePath = "/proc/thread-self/ns/net";

    private readonly SafeFileHandle? _handle;
    private readonly string? _id;

    private NetworkNamespace(SafeFileHandle? handle, string? id)
    {
        _handle = handle;
        _id = id;
    }

    /// <summary>A named namespace as <c>ip netns</c> makes them (<c>/var/run/netns/NAME</c>).</summary>
    /// <exception cref="IOException">There is no such namespace.</exception>
    public static NetworkNamespace Named(string name)
    {
        // Its id is the name, which never equals a thread's "net:[inode]": Run always enters it on a thread of its own.
        return new NetworkNamespace(File.OpenHandle($"/var/run/netns/{name}", FileMode.Open, FileAccess.Read), name);
    }

    /// <summary>The calling thread's namespace. Without <c>/proc</c>, an empty one that runs everything where it is called.</summary>
    public static NetworkNamespace OfCurrentThread()
    {
        string? id = CurrentId();
        if (id is null)
        {
            return new NetworkNamespace(null, null);
        }

        try
        {
            return new NetworkNamespace(File.OpenHandle(ThreadNamespacePath, FileMode.Open, FileAccess.Read), id);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return new NetworkNamespace(null, null);
        }
    }

    /// <summary>
    /// Runs <paramref name="create"/> in this namespace: on the calling thread when it is already there (no privilege
    /// needed), else on a short-lived thread that enters it first (<c>setns</c>, which needs <c>CAP_SYS_ADMIN</c>).
    /// </summary>
    /// <exception cref="PathManagement.PathManagerException">The namespace cannot be entered.</exception>
    public T Run<T>(Func<T> create)
    {
        if (_handle is null || CurrentId() == _id)
        {
            return create();
        }

        T? result = default;
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                bool added = false;
                _handle.DangerousAddRef(ref added);
                try
                {
                    if (setns((int)_handle.DangerousGetHandle(), CLONE_NEWNET) != 0)
                    {
                        int errno = Marshal.GetLastPInvokeError();
                        throw new PathManagement.PathManagerException("setns(CLONE_NEWNET)", errno, null,
                            $"cannot enter the network namespace {_id}; call from a thread in that namespace, or grant CAP_SYS_ADMIN");
                    }
                }
                finally
                {
                    if (added)
                    {
                        _handle.DangerousRelease();
                    }
                }

                result = create();
            }
            catch (Exception ex)
            {
                error = ex;
            }
        })
        {
            IsBackground = true,
            Name = $"netns {_id}",
        };
        thread.Start();
        thread.Join();
        if (error is not null)
        {
            ExceptionDispatchInfo.Throw(error);
        }

        return result!;
    }

    public void Dispose() => _handle?.Dispose();

    /// <summary>The calling thread's namespace as <c>net:[inode]</c>, or null without <c>/proc</c>.</summary>
    private static string? CurrentId()
    {
        try
        {
            return new FileInfo(ThreadNamespacePath).LinkTarget;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setns(int fd, int nstype);
}
