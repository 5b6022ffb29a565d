namespace MptcpAnycast.Rescue;

/// <summary>The rescue program cannot be loaded, attached or given its maps; says what and with which errno.</summary>
public sealed class RescueDataplaneException : Exception
{
    internal RescueDataplaneException(string message, int errno, Exception? inner = null, string? details = null)
        : base(Describe(message, errno, details), inner)
    {
        Errno = errno;
    }

    /// <summary>The errno libbpf or the kernel returned (0 when the failure is not a system call's).</summary>
    public int Errno { get; }

    private static string Describe(string message, int errno, string? details)
    {
        string text = errno == 0 ? message : $"{message}: {Interop.NativeSocket.DescribeErrno(errno)} (errno {errno})";
        return string.IsNullOrWhiteSpace(details) ? text : $"{text}{Environment.NewLine}{details.TrimEnd()}";
    }
}
