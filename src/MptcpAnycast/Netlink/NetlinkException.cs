using MptcpAnycast.Interop;

namespace MptcpAnycast.Netlink;

/// <summary>
/// A netlink operation that failed: the socket call or the kernel's answer, with the errno and the kernel's extended-ack
/// text when it sent one. The netlink layer raises only this (and <see cref="ObjectDisposedException"/> once closed);
/// the protocol clients above it turn it into their own error type.
/// </summary>
internal sealed class NetlinkException(string operation, int errno, string? kernelMessage = null, string? explanation = null, Exception? inner = null)
    : Exception($"{operation} failed: {kernelMessage ?? NativeSocket.DescribeErrno(errno)} (errno {errno}){(explanation is null ? "" : $": {explanation}")}", inner)
{
    /// <summary>What failed: a socket call (<c>socket(AF_NETLINK)</c>) or the request's name.</summary>
    public string Operation { get; } = operation;

    /// <summary>The positive errno.</summary>
    public int Errno { get; } = errno;

    /// <summary>The kernel's extended-ack text, or null.</summary>
    public string? KernelMessage { get; } = kernelMessage;

    /// <summary>Why, in a sentence, when the errno alone does not say it (a timeout, a dropped answer), or null.</summary>
    public string? Explanation { get; } = explanation;
}
