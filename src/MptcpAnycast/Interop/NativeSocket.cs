using System.Net.Sockets;
using Tmds.Linux;

namespace MptcpAnycast.Interop;

/// <summary>The few libc socket calls that .NET cannot make for us (it refuses protocol 262).</summary>
internal static unsafe partial class NativeSocket
{
    /// <summary>Creates a socket with <c>SOCK_CLOEXEC</c>; returns the fd or <c>-errno</c>.</summary>
    public static int Create(int domain, int type, int protocol)
    {
        while (true)
        {
            int fd = LibC.socket(domain, type | LibC.SOCK_CLOEXEC, protocol);
            if (fd >= 0)
            {
                return fd;
            }

            int errno = LibC.errno;
            if (errno != Errno.EINTR)
            {
                return -errno;
            }
        }
    }

    /// <summary>Wraps a fresh fd in a <see cref="Socket"/> that owns it.</summary>
    public static Socket Wrap(int fd)
    {
        var handle = new SafeSocketHandle((IntPtr)fd, ownsHandle: true);
        try
        {
            return new Socket(handle);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary><c>getsockopt</c> into a caller buffer; returns the length written or <c>-errno</c>.</summary>
    public static int GetOption(SafeSocketHandle handle, int level, int name, Span<byte> value)
    {
        using var lease = new FdLease(handle);
        fixed (byte* p = value)
        {
            socklen_t len = (uint)value.Length;
            while (true)
            {
                if (LibC.getsockopt(lease.Fd, level, name, p, &len) == 0)
                {
                    return (int)(uint)len;
                }

                int errno = LibC.errno;
                if (errno != Errno.EINTR)
                {
                    return -errno;
                }
            }
        }
    }

    /// <summary><c>setsockopt</c> with an <c>int</c> value; returns 0 or the errno.</summary>
    public static int SetInt(SafeSocketHandle handle, int level, int name, int value)
    {
        using var lease = new FdLease(handle);
        return LibC.setsockopt(lease.Fd, level, name, &value, sizeof(int)) == 0 ? 0 : LibC.errno;
    }

    /// <summary>
    /// <c>setsockopt(SO_ATTACH_FILTER)</c> with a classic BPF program (<c>struct sock_fprog</c>, which the kernel copies);
    /// replaces any filter already attached. Returns 0 or the errno.
    /// </summary>
    public static int AttachFilter(SafeSocketHandle handle, ReadOnlySpan<SocketFilterInstruction> program)
    {
        using var lease = new FdLease(handle);
        fixed (SocketFilterInstruction* instructions = program)
        {
            var fprog = new SocketFilterProgram { Length = (ushort)program.Length, Instructions = instructions };
            return LibC.setsockopt(lease.Fd, MptcpConstants.SOL_SOCKET, SocketFilterConstants.SO_ATTACH_FILTER, &fprog, sizeof(SocketFilterProgram)) == 0 ? 0 : LibC.errno;
        }
    }

    /// <summary><c>struct sock_fprog</c>.</summary>
    private struct SocketFilterProgram
    {
        public ushort Length;
        public SocketFilterInstruction* Instructions;
    }

    /// <summary>
    /// One <c>recv</c> into <paramref name="buffer"/>, blocking unless <paramref name="dontWait"/> (<c>MSG_DONTWAIT</c>:
    /// <c>EAGAIN</c> when nothing is queued); returns the length or <c>-errno</c> (<c>EINTR</c> retried).
    /// </summary>
    public static int Receive(SafeSocketHandle handle, Span<byte> buffer, bool dontWait = false)
    {
        using var lease = new FdLease(handle);
        fixed (byte* p = buffer)
        {
            while (true)
            {
                long n = LibC.recv(lease.Fd, p, buffer.Length, dontWait ? MSG_DONTWAIT : 0);
                if (n >= 0)
                {
                    return (int)n;
                }

                int errno = LibC.errno;
                if (errno != Errno.EINTR)
                {
                    return -errno;
                }
            }
        }
    }

    private const int MSG_DONTWAIT = 0x40;

    /// <summary>One <c>send</c> of <paramref name="buffer"/>; returns the length sent or <c>-errno</c> (<c>EINTR</c> retried).</summary>
    public static int Send(SafeSocketHandle handle, ReadOnlySpan<byte> buffer)
    {
        using var lease = new FdLease(handle);
        fixed (byte* p = buffer)
        {
            while (true)
            {
                long n = LibC.send(lease.Fd, p, buffer.Length, 0);
                if (n >= 0)
                {
                    return (int)n;
                }

                int errno = LibC.errno;
                if (errno != Errno.EINTR)
                {
                    return -errno;
                }
            }
        }
    }

    /// <summary><c>SO_RCVTIMEO</c>: how long a blocking receive waits before failing with <c>EAGAIN</c>; returns 0 or the errno.</summary>
    public static int SetReceiveTimeout(SafeSocketHandle handle, TimeSpan timeout)
    {
        using var lease = new FdLease(handle);
        long microseconds = (long)timeout.TotalMicroseconds;
        var value = new Timeval { Seconds = microseconds / 1_000_000, Microseconds = microseconds % 1_000_000 };
        return LibC.setsockopt(lease.Fd, MptcpConstants.SOL_SOCKET, NetlinkConstants.SO_RCVTIMEO, &value, (uint)sizeof(Timeval)) == 0 ? 0 : LibC.errno;
    }

    /// <summary><c>struct timeval</c> on 64-bit Linux (what <c>SO_RCVTIMEO</c> takes).</summary>
    private struct Timeval
    {
        public long Seconds;
        public long Microseconds;
    }

    /// <summary><c>bind</c> to a raw <c>sockaddr</c>; returns 0 or the errno.</summary>
    public static int Bind(SafeSocketHandle handle, ReadOnlySpan<byte> sockaddr)
    {
        using var lease = new FdLease(handle);
        fixed (byte* p = sockaddr)
        {
            return LibC.bind(lease.Fd, (sockaddr*)p, (uint)sockaddr.Length) == 0 ? 0 : LibC.errno;
        }
    }

    /// <summary><c>getsockopt</c> for an <c>int</c> option; returns false with the errno when it fails.</summary>
    public static bool TryGetInt(SafeSocketHandle handle, int level, int name, out int value, out int errno)
    {
        Span<byte> buffer = stackalloc byte[sizeof(int)];
        int rc = GetOption(handle, level, name, buffer);
        if (rc < 0)
        {
            value = 0;
            errno = -rc;
            return false;
        }

        value = BitConverter.ToInt32(buffer);
        errno = 0;
        return true;
    }

    /// <summary>The C library's text for an errno value ("Protocol not supported").</summary>
    public static string DescribeErrno(int errno) => System.Runtime.InteropServices.Marshal.GetPInvokeErrorMessage(errno);

    /// <summary>Keeps a <see cref="SafeSocketHandle"/> alive (and its fd valid) while a native call uses the fd.</summary>
    private ref struct FdLease
    {
        private readonly SafeSocketHandle _handle;
        private readonly bool _added;

        public FdLease(SafeSocketHandle handle)
        {
            _handle = handle;
            _added = false;
            handle.DangerousAddRef(ref _added);
            Fd = (int)handle.DangerousGetHandle();
        }

        public int Fd { get; }

        public void Dispose()
        {
            if (_added)
            {
                _handle.DangerousRelease();
            }
        }
    }
}
