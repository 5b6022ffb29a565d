using MptcpAnycast.Interop;
using MptcpAnycast.Netlink;

namespace MptcpAnycast.PathManagement;

/// <summary>What a failed path-manager command means for the caller.</summary>
public enum PathManagerErrorKind
{
    /// <summary>The path manager cannot be used now: no permission (<c>EPERM</c>), no MPTCP, no answer in time, a broken socket.</summary>
    Unavailable = 0,

    /// <summary>Try again shortly: the kernel was short of buffers or busy (<c>ENOBUFS</c>, <c>EAGAIN</c>, <c>EBUSY</c>, <c>EINTR</c>, <c>ENOMEM</c>).</summary>
    Transient,

    /// <summary>
    /// The kernel refused this command's arguments (<c>EINVAL</c>, <c>ENOENT</c>, <c>ESRCH</c>): for a per-connection
    /// command usually "invalid token", because the connection has closed meanwhile.
    /// </summary>
    Refused,
}

/// <summary>
/// A path-manager command the kernel refused, or a path manager that is not there. Carries the errno, the command and
/// the kernel's own explanation (its extended-ack text, e.g. "invalid token" or "invalid addr id or flags").
/// </summary>
public sealed class PathManagerException : Exception
{
    internal PathManagerException(string command, int errno, string? kernelMessage, string? explanation = null, Exception? inner = null)
        : base(Compose(command, errno, kernelMessage, explanation), inner)
    {
        Command = command;
        Errno = errno;
        KernelMessage = kernelMessage;
    }

    /// <summary>The positive errno (<c>EINVAL</c> = 22, <c>EPERM</c> = 1, <c>ENOENT</c> = 2 ...).</summary>
    public int Errno { get; }

    /// <summary>The command that failed, by its kernel name (<c>ANNOUNCE</c>, <c>GET_ADDR</c> ...).</summary>
    public string Command { get; }

    /// <summary>The kernel's extended-ack text, or null when it gave none.</summary>
    public string? KernelMessage { get; }

    /// <summary>Whether to retry, give up on this one command, or treat the path manager as unavailable.</summary>
    public PathManagerErrorKind Kind => KindOf(Errno);

    internal static PathManagerErrorKind KindOf(int errno) => errno switch
    {
        Interop.Errno.ENOBUFS or Interop.Errno.EAGAIN or Interop.Errno.EBUSY or Interop.Errno.EINTR or Interop.Errno.ENOMEM => PathManagerErrorKind.Transient,
        Interop.Errno.EINVAL or Interop.Errno.ENOENT or Interop.Errno.ESRCH or Interop.Errno.EADDRINUSE => PathManagerErrorKind.Refused,
        _ => PathManagerErrorKind.Unavailable,
    };

    /// <summary>The same failure in the path manager's terms: <paramref name="command"/> names it.</summary>
    internal static PathManagerException From(NetlinkException error, string command) =>
        new(command, error.Errno, error.KernelMessage, error.Explanation, error);

    private static string Compose(string command, int errno, string? kernelMessage, string? explanation)
    {
        string what = kernelMessage ?? NativeSocket.DescribeErrno(errno);
        string text = $"MPTCP path manager {command} failed: {what} (errno {errno})";
        if (explanation is not null)
        {
            return $"{text}: {explanation}";
        }

        return errno == Interop.Errno.EPERM
            ? $"{text}: the process lacks CAP_NET_ADMIN, which path-manager commands and events need (run as root or grant CAP_NET_ADMIN)"
            : text;
    }
}
