using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace MptcpAnycast.Cli.Lab;

/// <summary>
/// Runs code on a fresh thread that has entered a named network namespace (<c>setns</c> on
/// <c>/var/run/netns/NAME</c>). Sockets created there belong to that namespace for their whole life, whichever
/// thread uses them later; so a server or client socket for the lab can be made here and then used with async I/O.
/// </summary>
internal static partial class NamespaceThread
{
    private const int CLONE_NEWNET = 0x40000000;

    /// <summary>Runs <paramref name="action"/> synchronously inside namespace <paramref name="name"/> and returns its result.</summary>
    public static T Run<T>(string name, Func<T> action)
    {
        ArgumentNullException.ThrowIfNull(action);
        T? result = default;
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                using SafeFileHandle ns = File.OpenHandle($"/var/run/netns/{name}", FileMode.Open, FileAccess.Read);
                if (setns((int)ns.DangerousGetHandle(), CLONE_NEWNET) != 0)
                {
                    throw new InvalidOperationException($"setns({name}) failed: errno {Marshal.GetLastPInvokeError()}");
                }

                result = action();
            }
            catch (Exception ex)
            {
                error = ex;
            }
        })
        {
            IsBackground = true,
            Name = $"netns {name}",
        };
        thread.Start();
        thread.Join();
        if (error is not null)
        {
            ExceptionDispatchInfo.Throw(error);
        }

        return result!;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setns(int fd, int nstype);
}
