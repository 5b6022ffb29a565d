namespace MptcpAnycast.PathManagement;

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

    private static string Compose(string command, int errno, string? kernelMessage, string? explanation)
    {
        string what = kernelMessage ?? Interop.NativeSocket.DescribeErrno(errno);
        string text = $"MPTCP path manager {command} failed: {what} (errno {errno})";
        if (explanation is not null)
        {
            return $"{text}: {explanation}";
        }

        return errno == Interop.NetlinkConstants.EPERM
            ? $"{text}: the process lacks CAP_NET_ADMIN, which path-manager commands and events need (run as root or grant CAP_NET_ADMIN)"
            : text;
    }
}
