namespace MptcpAnycast.Interop;

// Values mirror asm-generic/errno-base.h and asm-generic/errno.h (SPDX: GPL-2.0 WITH Linux-syscall-note), which
// every Linux architecture .NET runs on uses. KernelHeaderTests checks each against the installed <errno.h>.
#pragma warning disable IDE1006 // C names

/// <summary>The errno values the library tells apart: one list for sockets, netlink and the path manager.</summary>
internal static class Errno
{
    public const int EPERM = 1;
    public const int ENOENT = 2;
    public const int ESRCH = 3;
    public const int EINTR = 4;
    public const int EBADF = 9;
    public const int EAGAIN = 11;
    public const int ENOMEM = 12;
    public const int EACCES = 13;
    public const int EBUSY = 16;
    public const int EEXIST = 17;
    public const int EINVAL = 22;
    public const int ENFILE = 23;
    public const int EMFILE = 24;
    public const int ENOSPC = 28;
    public const int ESTALE = 116;
    public const int EBADMSG = 74;
    public const int ENOPROTOOPT = 92;
    public const int EPROTONOSUPPORT = 93;
    public const int EOPNOTSUPP = 95;
    public const int EAFNOSUPPORT = 97;
    public const int EADDRINUSE = 98;
    public const int ENOBUFS = 105;
    public const int ETIMEDOUT = 110;
}
