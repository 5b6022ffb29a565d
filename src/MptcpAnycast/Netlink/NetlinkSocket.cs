using System.Net.Sockets;
using MptcpAnycast.Interop;
using static MptcpAnycast.Interop.SocketFilterConstants;

namespace MptcpAnycast.Netlink;

/// <summary>
/// A netlink socket from libc (<c>AF_NETLINK</c>; <c>NETLINK_GENERIC</c> for the path manager, <c>NETLINK_SOCK_DIAG</c>
/// for the socket table), wrapped in a <see cref="Socket"/> that owns the descriptor; sends and receives are blocking
/// libc calls (<see cref="NativeSocket"/>). It asks for extended acks (the kernel's error text) and capped acks (errors
/// do not echo the request). Like every socket it belongs to the network namespace of the thread that creates it.
/// </summary>
internal sealed class NetlinkSocket : IDisposable
{
    private const int SockaddrNlSize = 12; // struct sockaddr_nl { sa_family_t; unsigned short pad; __u32 pid; __u32 groups; }

    private NetlinkSocket(Socket socket) => Socket = socket;

    public Socket Socket { get; }

    /// <summary>Creates and binds (port id chosen by the kernel) a generic-netlink socket.</summary>
    /// <exception cref="NetlinkException">The socket cannot be created or bound.</exception>
    public static NetlinkSocket Open() => Open(NetlinkConstants.NETLINK_GENERIC, "generic netlink");

    /// <summary>Creates and binds a <c>NETLINK_SOCK_DIAG</c> socket, which queries the kernel's socket tables.</summary>
    /// <exception cref="NetlinkException">The socket cannot be created or bound.</exception>
    public static NetlinkSocket OpenSockDiag() => Open(NetlinkConstants.NETLINK_SOCK_DIAG, "sock_diag netlink");

    private static NetlinkSocket Open(int protocol, string kind)
    {
        int fd = NativeSocket.Create(NetlinkConstants.AF_NETLINK, Tmds.Linux.LibC.SOCK_RAW, protocol);
        if (fd < 0)
        {
            throw new NetlinkException("socket(AF_NETLINK)", -fd, explanation: $"cannot create a {kind} socket");
        }

        Socket socket = NativeSocket.Wrap(fd);
        var netlink = new NetlinkSocket(socket);
        try
        {
            // Best effort: older kernels lack these and still answer, just without the text.
            NativeSocket.SetInt(socket.SafeHandle, NetlinkConstants.SOL_NETLINK, NetlinkConstants.NETLINK_EXT_ACK, 1);
            NativeSocket.SetInt(socket.SafeHandle, NetlinkConstants.SOL_NETLINK, NetlinkConstants.NETLINK_CAP_ACK, 1);
            Span<byte> address = stackalloc byte[SockaddrNlSize];
            address.Clear();
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(address, NetlinkConstants.AF_NETLINK);
            int errno = NativeSocket.Bind(socket.SafeHandle, address);
            if (errno != 0)
            {
                throw new NetlinkException("bind(AF_NETLINK)", errno, explanation: $"cannot bind a {kind} socket");
            }

            return netlink;
        }
        catch
        {
            netlink.Dispose();
            throw;
        }
    }

    /// <summary>Joins a multicast group; returns 0 or the errno (<c>EPERM</c> without <c>CAP_NET_ADMIN</c> for <c>mptcp_pm_events</c>).</summary>
    public int JoinGroup(uint groupId) =>
        NativeSocket.SetInt(Socket.SafeHandle, NetlinkConstants.SOL_NETLINK, NetlinkConstants.NETLINK_ADD_MEMBERSHIP, (int)groupId);

    /// <summary>
    /// Sets the receive buffer (the kernel doubles the value and applies its minimum). Above <c>net.core.rmem_max</c>,
    /// where <c>SO_RCVBUF</c> would be capped, it tries <c>SO_RCVBUFFORCE</c> first (needs <c>CAP_NET_ADMIN</c>,
    /// which a process joining <c>mptcp_pm_events</c> has anyway) and falls back to <c>SO_RCVBUF</c>. Returns 0 or the errno.
    /// </summary>
    public int SetReceiveBuffer(int bytes)
    {
        if (bytes > ReadReceiveBufferMax()
            && NativeSocket.SetInt(Socket.SafeHandle, MptcpConstants.SOL_SOCKET, NetlinkConstants.SO_RCVBUFFORCE, bytes) == 0)
        {
            return 0;
        }

        return NativeSocket.SetInt(Socket.SafeHandle, MptcpConstants.SOL_SOCKET, NetlinkConstants.SO_RCVBUF, bytes);
    }

    /// <summary>The receive buffer the kernel gave the socket (<c>SO_RCVBUF</c> as read back: twice what was asked), or -1.</summary>
    public int ReceiveBufferSize =>
        NativeSocket.TryGetInt(Socket.SafeHandle, MptcpConstants.SOL_SOCKET, NetlinkConstants.SO_RCVBUF, out int value, out _) ? value : -1;

    /// <summary>
    /// Lets the kernel queue only generic-netlink messages whose command (the byte after the netlink header) has its bit
    /// set in <paramref name="wantedCommands"/>: a classic BPF socket filter, run by the kernel for every multicast
    /// message before it is queued, so unwanted events cost neither receive-buffer space nor a wake-up. All bits set
    /// accepts everything; 0 accepts nothing. Returns 0 or the errno.
    /// </summary>
    public int FilterGenericCommands(uint wantedCommands)
    {
        const byte drop = 5; // from instruction 1 to 7
        ReadOnlySpan<SocketFilterInstruction> program = wantedCommands == uint.MaxValue
            ? [SocketFilterInstruction.Statement(BPF_RET | BPF_K, AcceptWhole)]
            :
            [
                SocketFilterInstruction.Statement(BPF_LD | BPF_B | BPF_ABS, NetlinkConstants.NLMSG_HDRLEN), // A = genlmsghdr.cmd (short message: dropped)
                SocketFilterInstruction.Jump(BPF_JMP | BPF_JGE | BPF_K, 32, drop, 0),                       // A >= 32: not in the mask
                SocketFilterInstruction.Statement(BPF_MISC | BPF_TAX, 0),                                   // X = A
                SocketFilterInstruction.Statement(BPF_LD | BPF_W | BPF_IMM, 1),                             // A = 1
                SocketFilterInstruction.Statement(BPF_ALU | BPF_LSH | BPF_X, 0),                            // A = 1 << cmd
                SocketFilterInstruction.Jump(BPF_JMP | BPF_JSET | BPF_K, wantedCommands, 0, 1),              // A & mask ?
                SocketFilterInstruction.Statement(BPF_RET | BPF_K, AcceptWhole),
                SocketFilterInstruction.Statement(BPF_RET | BPF_K, 0),
            ];
        return NativeSocket.AttachFilter(Socket.SafeHandle, program);
    }

    private const uint AcceptWhole = uint.MaxValue; // a filter returns how many bytes to keep

    /// <summary><c>net.core.rmem_max</c>, or 0 when it cannot be read (then <c>SO_RCVBUFFORCE</c> is simply tried).</summary>
    private static int ReadReceiveBufferMax() => ProcFiles.ReadInt("/proc", "sys/net/core/rmem_max") ?? 0;

    public void Dispose() => Socket.Dispose();
}
