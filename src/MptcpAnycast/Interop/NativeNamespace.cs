using System.Runtime.InteropServices;

namespace MptcpAnycast.Interop;

#pragma warning disable IDE1006 // C names

/// <summary><c>setns(2)</c> for network namespaces (<c>linux/sched.h</c>).</summary>
internal static partial class NativeNamespace
{
    public const int CLONE_NEWNET = 0x40000000;

    /// <summary>Moves the calling thread into the namespace behind <paramref name="fd"/>; returns 0 or the errno.</summary>
    public static int Enter(int fd) => setns(fd, CLONE_NEWNET) == 0 ? 0 : Marshal.GetLastPInvokeError();

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setns(int fd, int nstype);
}
