using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using MptcpAnycast.Cli.Commands;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Tests.Cli;

/// <summary>
/// The tool runs in this process as root, in the test host's namespace. Its path-manager commands open their client in
/// a network namespace of their own (unshare on a short-lived thread; the client's sockets keep the namespace alive
/// and it goes with them), so an <c>endpoints add</c> or <c>limits</c> that a regression lets through reaches no
/// endpoint or limit of the host, where it would break the loopback MPTCP tests that run beside these.
/// </summary>
internal static partial class OwnNetworkNamespace
{
    private const int CloneNewNet = 0x40000000;

    [ModuleInitializer]
    internal static void Install() => PathManagerArguments.Opener = OpenAsync;

    public static Task<PathManagerClient> OpenAsync()
    {
        PathManagerClient? client = null;
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                if (unshare(CloneNewNet) != 0 && geteuid() == 0)
                {
                    throw new InvalidOperationException($"unshare(CLONE_NEWNET) failed (errno {Marshal.GetLastPInvokeError()}); the tool's tests will not run it in the host's namespace");
                }

                // Not root (and so without CAP_SYS_ADMIN, which unshare needs): the commands fail as they would for a
                // user, unless the process holds CAP_NET_ADMIN alone, which these tests are not run with.
                client = PathManagerClient.Open(new PathManagerClientOptions { CommandTimeout = PathManagerArguments.Timeout });
            }
            catch (Exception e)
            {
                error = e;
            }
        });
        thread.Start();
        thread.Join();
        return error is null ? Task.FromResult(client!) : Task.FromException<PathManagerClient>(error);
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int unshare(int flags);

    [LibraryImport("libc")]
    private static partial uint geteuid();
}
