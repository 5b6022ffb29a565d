using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Interop;

namespace MptcpAnycast;

/// <summary>
/// Creates Multipath TCP sockets (<c>IPPROTO_MPTCP</c>) and reads their state. .NET cannot create them itself
/// (it refuses protocol 262), so the descriptor comes from libc and is wrapped in an ordinary
/// <see cref="Socket"/>: bind, listen, accept, connect and async I/O all work as usual.
/// </summary>
/// <remarks>
/// Sockets belong to the network namespace of the thread that creates them. Support is checked on every call to
/// <see cref="CheckSupport"/>, which costs one <c>socket()</c> and one <c>close()</c>.
/// </remarks>
public static class MptcpSocket
{
    private const int MaxSubflowsOnStack = 8;

    /// <summary>True when this host (this network namespace) can create MPTCP sockets.</summary>
    public static bool IsSupported => CheckSupport().IsSupported;

    /// <summary>Checks whether MPTCP sockets of the given family can be created here, and if not, why.</summary>
    /// <param name="addressFamily"><see cref="AddressFamily.InterNetwork"/> or <see cref="AddressFamily.InterNetworkV6"/>.</param>
    public static MptcpSupport CheckSupport(AddressFamily addressFamily = AddressFamily.InterNetwork)
    {
        int domain = ToDomain(addressFamily);
        if (!OperatingSystem.IsLinux())
        {
            return MptcpSupport.NotLinux;
        }

        int fd = NativeSocket.Create(domain, Tmds.Linux.LibC.SOCK_STREAM, MptcpConstants.IPPROTO_MPTCP);
        if (fd < 0)
        {
            return MptcpSupport.FromErrno(-fd, addressFamily);
        }

        Tmds.Linux.LibC.close(fd);
        return MptcpSupport.Supported;
    }

    /// <summary>Creates an unbound MPTCP stream socket.</summary>
    /// <param name="addressFamily"><see cref="AddressFamily.InterNetwork"/> or <see cref="AddressFamily.InterNetworkV6"/>.</param>
    /// <param name="fallback">What to do when the host has no MPTCP. The default throws.</param>
    /// <exception cref="SocketException">MPTCP is unavailable and <paramref name="fallback"/> is <see cref="MptcpFallback.None"/>;
    /// the message says why and how to fix it.</exception>
    public static Socket Create(AddressFamily addressFamily, MptcpFallback fallback = MptcpFallback.None)
    {
        int domain = ToDomain(addressFamily);
        if (!OperatingSystem.IsLinux())
        {
            return fallback == MptcpFallback.Tcp
                ? new Socket(addressFamily, SocketType.Stream, ProtocolType.Tcp)
                : throw new SocketException((int)SocketError.ProtocolNotSupported, MptcpSupport.NotLinux.Message);
        }

        int fd = NativeSocket.Create(domain, Tmds.Linux.LibC.SOCK_STREAM, MptcpConstants.IPPROTO_MPTCP);
        if (fd < 0)
        {
            int errno = -fd;
            bool mptcpMissing = errno is Errno.EINVAL or Errno.EPROTONOSUPPORT or Errno.ENOPROTOOPT;
            if (fallback == MptcpFallback.Tcp && mptcpMissing)
            {
                return new Socket(addressFamily, SocketType.Stream, ProtocolType.Tcp);
            }

            throw new SocketException((int)ToSocketError(errno), MptcpSupport.FromErrno(errno, addressFamily).Message);
        }

        // As .NET does for its own sockets on Unix: a server restarted while its old connections sit in TIME_WAIT must
        // bind its port again (without it, a restart after a burst of "Connection: close" failed with EADDRINUSE for a
        // minute). Linux still refuses a port that another socket is listening on.
        Socket socket = NativeSocket.Wrap(fd);
        NativeSocket.SetInt(socket.SafeHandle, MptcpConstants.SOL_SOCKET, MptcpConstants.SO_REUSEADDR, 1);
        return socket;
    }

    /// <summary>
    /// Creates an MPTCP socket bound to <paramref name="endPoint"/> and listening. An IPv6 wildcard
    /// (<see cref="IPAddress.IPv6Any"/>) listener is dual-mode: it accepts IPv4 clients too.
    /// </summary>
    /// <param name="endPoint">The local address and port; port 0 picks a free port (read it from <see cref="Socket.LocalEndPoint"/>).</param>
    /// <param name="backlog">The accept backlog. Default 512, as Kestrel.</param>
    /// <param name="fallback">What to do when the host has no MPTCP. The default throws.</param>
    public static Socket CreateListener(IPEndPoint endPoint, int backlog = 512, MptcpFallback fallback = MptcpFallback.None)
    {
        ArgumentNullException.ThrowIfNull(endPoint);
        ArgumentOutOfRangeException.ThrowIfNegative(backlog);
        Socket socket = Create(endPoint.AddressFamily, fallback);
        try
        {
            if (endPoint.AddressFamily == AddressFamily.InterNetworkV6 && endPoint.Address.Equals(IPAddress.IPv6Any))
            {
                socket.DualMode = true;
            }

            socket.Bind(endPoint);
            socket.Listen(backlog);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>True when <paramref name="socket"/> is an MPTCP socket (<c>SO_PROTOCOL</c> is <c>IPPROTO_MPTCP</c>).</summary>
    /// <remarks>An accepted socket whose client spoke plain TCP is a TCP socket even on an MPTCP listener.</remarks>
    public static bool IsMptcpSocket(Socket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        return NativeSocket.TryGetInt(socket.SafeHandle, MptcpConstants.SOL_SOCKET, MptcpConstants.SO_PROTOCOL, out int protocol, out _)
            && protocol == MptcpConstants.IPPROTO_MPTCP;
    }

    /// <summary>
    /// Reads the connection's MPTCP state (<c>MPTCP_INFO</c>). Costs one <c>getsockopt</c> (two for a plain TCP
    /// socket) and allocates nothing. Never throws for a socket that fell back to TCP: the result says so.
    /// </summary>
    public static MptcpConnectionInfo GetConnectionInfo(Socket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        Span<byte> info = stackalloc byte[MptcpInfoLayout.Size];
        info.Clear();
        int rc = NativeSocket.GetOption(socket.SafeHandle, MptcpConstants.SOL_MPTCP, MptcpConstants.MPTCP_INFO, info);
        if (rc < 0)
        {
            // A plain TCP socket (the peer did not speak MPTCP), or an MPTCP socket whose kernel will not report.
            return IsMptcpSocket(socket)
                ? MptcpConnectionInfo.FallenBack(MptcpFallbackReason.FellBackToTcp)
                : MptcpConnectionInfo.FallenBack(MptcpFallbackReason.PlainTcpSocket);
        }

        return MptcpConnectionInfo.Parse(info[..Math.Min(rc, info.Length)]);
    }

    /// <summary>
    /// The local and remote address of every subflow (<c>MPTCP_SUBFLOW_ADDRS</c>). A plain TCP socket reports its
    /// one path. Allocates only the result.
    /// </summary>
    public static MptcpSubflow[] GetSubflows(Socket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        Span<byte> buffer = stackalloc byte[MptcpSubflowLayout.SubflowDataSize + (MaxSubflowsOnStack * MptcpSubflowLayout.SubflowAddrsSize)];
        byte[]? rented = null;
        while (true)
        {
            buffer.Clear();
            BinaryPrimitives.WriteUInt32LittleEndian(buffer[MptcpSubflowLayout.size_subflow_data..], MptcpSubflowLayout.SubflowDataSize);
            BinaryPrimitives.WriteUInt32LittleEndian(buffer[MptcpSubflowLayout.size_user..], MptcpSubflowLayout.SubflowAddrsSize);
            int rc = NativeSocket.GetOption(socket.SafeHandle, MptcpConstants.SOL_MPTCP, MptcpConstants.MPTCP_SUBFLOW_ADDRS, buffer);
            if (rc < 0)
            {
                return PlainPath(socket);
            }

            int count = (int)BinaryPrimitives.ReadUInt32LittleEndian(buffer[MptcpSubflowLayout.num_subflows..]);
            int sizeKernel = (int)BinaryPrimitives.ReadUInt32LittleEndian(buffer[MptcpSubflowLayout.size_kernel..]);
            int stride = Math.Min(sizeKernel == 0 ? MptcpSubflowLayout.SubflowAddrsSize : sizeKernel, MptcpSubflowLayout.SubflowAddrsSize);
            int fits = (buffer.Length - MptcpSubflowLayout.SubflowDataSize) / MptcpSubflowLayout.SubflowAddrsSize;
            if (count > fits && rented is null && count < 4096)
            {
                rented = new byte[MptcpSubflowLayout.SubflowDataSize + (count * MptcpSubflowLayout.SubflowAddrsSize)];
                buffer = rented;
                continue;
            }

            int filled = Math.Min(count, fits);
            var result = new MptcpSubflow[filled];
            int valid = 0;
            for (int i = 0; i < filled; i++)
            {
                ReadOnlySpan<byte> entry = buffer.Slice(MptcpSubflowLayout.SubflowDataSize + (i * MptcpSubflowLayout.SubflowAddrsSize), stride);
                IPEndPoint? local = SockaddrReader.Parse(entry[MptcpSubflowLayout.ss_local..]);
                IPEndPoint? remote = SockaddrReader.Parse(entry[MptcpSubflowLayout.ss_remote..]);
                if (local is not null && remote is not null)
                {
                    result[valid++] = new MptcpSubflow(local, remote);
                }
            }

            return valid == filled ? result : result[..valid];
        }
    }

    private static MptcpSubflow[] PlainPath(Socket socket)
    {
        try
        {
            if (socket.LocalEndPoint is IPEndPoint local && socket.RemoteEndPoint is IPEndPoint remote)
            {
                return [new MptcpSubflow(local, remote)];
            }
        }
        catch (SocketException)
        {
            // Not connected: no path.
        }
        catch (ObjectDisposedException)
        {
            // Closed: no path.
        }

        return [];
    }

    private static int ToDomain(AddressFamily addressFamily) => addressFamily switch
    {
        AddressFamily.InterNetwork => MptcpConstants.AF_INET,
        AddressFamily.InterNetworkV6 => MptcpConstants.AF_INET6,
        _ => throw new ArgumentOutOfRangeException(nameof(addressFamily), addressFamily,
            "MPTCP sockets are InterNetwork (IPv4) or InterNetworkV6 (IPv6, also dual-mode)."),
    };

    private static SocketError ToSocketError(int errno) => errno switch
    {
        Errno.EPROTONOSUPPORT => SocketError.ProtocolNotSupported,
        Errno.ENOPROTOOPT => SocketError.ProtocolOption,
        Errno.EINVAL => SocketError.InvalidArgument,
        Errno.EAFNOSUPPORT => SocketError.AddressFamilyNotSupported,
        Errno.EMFILE or Errno.ENFILE => SocketError.TooManyOpenSockets,
        Errno.ENOBUFS or Errno.ENOMEM => SocketError.NoBufferSpaceAvailable,
        Errno.EACCES or Errno.EPERM => SocketError.AccessDenied,
        _ => SocketError.SocketError,
    };
}
