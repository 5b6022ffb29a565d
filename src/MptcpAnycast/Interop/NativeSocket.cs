using System.Net.Sockets;
using Tmds.Linux;

namespace MptcpAnycast.Interop;

/// <summary>The few libc socket calls that .NET cannot make for us (it refuses protocol 262).</summary>
internal static unsafe class NativeSocket
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
            if (errno != MptcpConstants.EINTR)
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
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            int fd = (int)handle.DangerousGetHandle();
            fixed (byte* p = value)
            {
                socklen_t len = (uint)value.Length;
                while (true)
                {
                    if (LibC.getsockopt(fd, level, name, p, &len) == 0)
                    {
                        return (int)(uint)len;
                    }

                    int errno = LibC.errno;
                    if (errno != MptcpConstants.EINTR)
                    {
                        return -errno;
                    }
                }
            }
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
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
}
