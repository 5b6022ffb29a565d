using System.Net.Sockets;
using MptcpAnycast.Interop;

namespace MptcpAnycast;

/// <summary>Why the host cannot create MPTCP sockets.</summary>
public enum MptcpUnsupportedReason
{
    /// <summary>MPTCP sockets can be created.</summary>
    None = 0,

    /// <summary>The operating system is not Linux.</summary>
    NotLinux,

    /// <summary>The kernel predates MPTCP (Linux 5.6): <c>socket()</c> answered <c>EINVAL</c>.</summary>
    KernelTooOld,

    /// <summary>The kernel was built without <c>CONFIG_MPTCP</c>: <c>socket()</c> answered <c>EPROTONOSUPPORT</c>.</summary>
    NotBuilt,

    /// <summary>MPTCP is disabled in this network namespace (<c>net.mptcp.enabled = 0</c>): <c>socket()</c> answered <c>ENOPROTOOPT</c>.</summary>
    Disabled,

    /// <summary>The address family is not available on this host (for example IPv6 disabled).</summary>
    AddressFamilyNotSupported,

    /// <summary>Another error; see <see cref="MptcpSupport.Errno"/>.</summary>
    Other,
}

/// <summary>Whether this host (this network namespace) can create MPTCP sockets, and if not, why.</summary>
public sealed class MptcpSupport
{
    private MptcpSupport(MptcpUnsupportedReason reason, int errno, string message)
    {
        Reason = reason;
        Errno = errno;
        Message = message;
    }

    /// <summary>True when MPTCP sockets can be created.</summary>
    public bool IsSupported => Reason == MptcpUnsupportedReason.None;

    /// <summary>Why MPTCP is unavailable, or <see cref="MptcpUnsupportedReason.None"/>.</summary>
    public MptcpUnsupportedReason Reason { get; }

    /// <summary>The errno that <c>socket(..., IPPROTO_MPTCP)</c> returned, or 0.</summary>
    public int Errno { get; }

    /// <summary>A sentence for an operator: what is wrong and how to fix it.</summary>
    public string Message { get; }

    /// <inheritdoc />
    public override string ToString() => Message;

    internal static MptcpSupport Supported { get; } = new(MptcpUnsupportedReason.None, 0, "MPTCP sockets are available.");

    internal static MptcpSupport NotLinux { get; } = new(MptcpUnsupportedReason.NotLinux, 0, "MPTCP sockets need Linux 5.6 or newer; this operating system is not Linux.");

    internal static MptcpSupport FromErrno(int errno, AddressFamily family)
    {
        string call = $"socket({(family == AddressFamily.InterNetworkV6 ? "AF_INET6" : "AF_INET")}, SOCK_STREAM, IPPROTO_MPTCP) failed with {ErrnoName(errno)}";
        return errno switch
        {
            Interop.Errno.EINVAL => new(MptcpUnsupportedReason.KernelTooOld, errno,
                $"{call}: the kernel is older than Linux 5.6 and has no MPTCP. Upgrade the kernel."),
            Interop.Errno.EPROTONOSUPPORT => new(MptcpUnsupportedReason.NotBuilt, errno,
                $"{call}: the kernel was built without CONFIG_MPTCP. Use a kernel built with MPTCP."),
            Interop.Errno.ENOPROTOOPT => new(MptcpUnsupportedReason.Disabled, errno,
                $"{call}: MPTCP is disabled in this network namespace. Fix: sysctl -w net.mptcp.enabled=1"),
            Interop.Errno.EAFNOSUPPORT => new(MptcpUnsupportedReason.AddressFamilyNotSupported, errno,
                $"{call}: this address family is not available on the host."),
            _ => new(MptcpUnsupportedReason.Other, errno, $"{call}: {NativeSocket.DescribeErrno(errno)}."),
        };
    }

    internal static string ErrnoName(int errno) => errno switch
    {
        Interop.Errno.EINVAL => "EINVAL",
        Interop.Errno.EPROTONOSUPPORT => "EPROTONOSUPPORT",
        Interop.Errno.ENOPROTOOPT => "ENOPROTOOPT",
        Interop.Errno.EAFNOSUPPORT => "EAFNOSUPPORT",
        Interop.Errno.EOPNOTSUPP => "EOPNOTSUPP",
        _ => $"errno {errno}",
    };
}
