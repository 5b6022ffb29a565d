using System.Buffers.Binary;
using System.Net;
using MptcpAnycast.Interop;
using MptcpAnycast.Netlink;
using static MptcpAnycast.Interop.InetDiagSockIdLayout;

namespace MptcpAnycast.Rescue.Ownership;

/// <summary>
/// Answers "is this flow mine?" from the kernel's own TCP socket table: one <c>SOCK_DIAG_BY_FAMILY</c> exact lookup
/// (<c>struct inet_diag_req_v2</c> holding the flow's four-tuple, no <c>NLM_F_DUMP</c>) per question, on one
/// <c>NETLINK_SOCK_DIAG</c> socket. The kernel searches the way it does for an arriving segment (connections, request
/// and time-wait sockets, then listeners), so the socket it reports is the one that would take the flow's segments; a
/// listener means the connection is not here. MPTCP subflows are TCP sockets in that table, and an IPv4 connection on
/// a dual-stack IPv6 socket is hashed under its IPv4 addresses, so both are found by the flow as seen on the wire.
/// </summary>
/// <remarks>
/// The socket belongs to the network namespace of the thread that calls <see cref="Open"/>. Lookups are serialised
/// (the kernel answers inside <c>send</c>, so one request at a time never queues more than one answer) and each
/// waits at most <see cref="Timeout"/>. A lookup allocates nothing: the request is on the stack and the answer buffer
/// is the instance's.
/// </remarks>
internal sealed class SocketTableLookup : IDisposable
{
    /// <summary>How long one lookup may wait for the kernel's answer unless <see cref="Open"/> is told otherwise.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(1);

    private const string Operation = "SOCK_DIAG_BY_FAMILY";
    private const int RequestSize = NetlinkConstants.NLMSG_HDRLEN + InetDiagReqV2Layout.Size;

    // An answer is one inet_diag_msg and a few attributes, well under 1 KiB; the rest is room for attributes a newer
    // kernel may add, since an answer that does not fit is cut short by recv.
    private const int AnswerBufferSize = 8 * 1024;

    private readonly NetlinkSocket _socket;
    private readonly Lock _gate = new();
    private readonly byte[] _answer = new byte[AnswerBufferSize]; // under _gate
    private uint _sequence; // under _gate
    private int _disposed;

    private SocketTableLookup(NetlinkSocket socket)
    {
        _socket = socket;
        _sequence = (uint)Environment.TickCount & 0x7fffffff;
    }

    /// <summary>How long one lookup waits for the kernel's answer (<c>SO_RCVTIMEO</c>).</summary>
    public TimeSpan Timeout { get; private set; }

    /// <summary>
    /// Opens the socket in the calling thread's network namespace and checks that the kernel has TCP socket
    /// diagnostics: without them it answers every lookup with <c>ENOENT</c>, which would read as "not owned".
    /// </summary>
    /// <param name="timeout">The bound on each lookup; <see cref="DefaultTimeout"/> when null.</param>
    /// <exception cref="NetlinkException">The socket cannot be created, or the kernel cannot look up TCP sockets.</exception>
    /// <exception cref="NetlinkFormatException">The kernel's answer to the check is malformed.</exception>
    public static SocketTableLookup Open(TimeSpan? timeout = null)
    {
        var lookup = new SocketTableLookup(NetlinkSocket.OpenSockDiag());
        try
        {
            lookup.Timeout = timeout ?? DefaultTimeout;
            int errno = NativeSocket.SetReceiveTimeout(lookup._socket.Socket.SafeHandle, lookup.Timeout);
            if (errno != 0)
            {
                throw new NetlinkException("setsockopt(SO_RCVTIMEO)", errno, explanation: "cannot bound the socket-table lookups");
            }

            lookup.CheckTcpDiagnostics();
            return lookup;
        }
        catch
        {
            lookup.Dispose();
            throw;
        }
    }

    /// <summary>Asks the kernel whether it holds <paramref name="flow"/>'s connection (the server end is the local one).</summary>
    /// <exception cref="NetlinkException">The kernel refused the lookup (its errno), or did not answer within <see cref="Timeout"/> (<c>ETIMEDOUT</c>).</exception>
    /// <exception cref="NetlinkFormatException">The answer is malformed or is not about <paramref name="flow"/>.</exception>
    /// <exception cref="ObjectDisposedException">The lookup was disposed.</exception>
    public SocketOwnership Lookup(TcpFlow flow)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        lock (_gate)
        {
            try
            {
                uint sequence = ++_sequence;
                Span<byte> request = stackalloc byte[RequestSize];
                Send(request[..WriteLookupRequest(request, sequence, flow)]);
                while (true)
                {
                    if (TryReadLookupAnswer(_answer.AsSpan(0, Receive()), sequence, flow, out SocketOwnership ownership))
                    {
                        return ownership;
                    }
                }
            }
            catch (ObjectDisposedException)
            {
                ObjectDisposedException.ThrowIf(true, this); // the socket was closed by Dispose
                throw;
            }
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _socket.Dispose();
        }
    }

    /// <summary>Writes the exact-lookup request for <paramref name="flow"/>; returns its length.</summary>
    internal static int WriteLookupRequest(Span<byte> buffer, uint sequence, TcpFlow flow)
    {
        var writer = new NetlinkWriter(buffer);
        writer.BeginMessage(SockDiagConstants.SOCK_DIAG_BY_FAMILY, NetlinkConstants.NLM_F_REQUEST, sequence);
        Span<byte> request = WriteRequestHeader(ref writer, flow.IsIPv6 ? MptcpConstants.AF_INET6 : MptcpConstants.AF_INET, uint.MaxValue);

        // The kernel matches the key as an arriving segment's destination: "src" is the local end, the server.
        Span<byte> id = request.Slice(InetDiagReqV2Layout.id, Size);
        BinaryPrimitives.WriteUInt16BigEndian(id[idiag_sport..], flow.ServerPort);
        BinaryPrimitives.WriteUInt16BigEndian(id[idiag_dport..], flow.ClientPort);
        WriteAddress(flow.ServerAddress, id.Slice(idiag_src, 16));
        WriteAddress(flow.ClientAddress, id.Slice(idiag_dst, 16));
        BinaryPrimitives.WriteUInt32LittleEndian(id[idiag_cookie..], SockDiagConstants.INET_DIAG_NOCOOKIE);
        BinaryPrimitives.WriteUInt32LittleEndian(id[(idiag_cookie + 4)..], SockDiagConstants.INET_DIAG_NOCOOKIE);
        writer.EndMessage();
        return writer.Length;
    }

    /// <summary>
    /// Reads one datagram of the answer to the lookup <paramref name="sequence"/> of <paramref name="flow"/>. Returns
    /// false when the datagram holds no message of that lookup (a late answer to an earlier one that timed out).
    /// </summary>
    /// <exception cref="NetlinkException">The kernel refused the lookup with an errno other than <c>ENOENT</c>.</exception>
    /// <exception cref="NetlinkFormatException">The answer is malformed or reports a socket that is not the flow's.</exception>
    internal static bool TryReadLookupAnswer(ReadOnlySpan<byte> datagram, uint sequence, TcpFlow flow, out SocketOwnership ownership)
    {
        var reader = new NetlinkMessageReader(datagram);
        while (reader.TryRead(out NetlinkMessage message))
        {
            if (message.Sequence != sequence || message.Type == NetlinkConstants.NLMSG_NOOP)
            {
                continue;
            }

            switch (message.Type)
            {
                case SockDiagConstants.SOCK_DIAG_BY_FAMILY:
                    ownership = ReadSocket(message.Payload, flow);
                    return true;
                case NetlinkConstants.NLMSG_ERROR:
                    NetlinkError error = NetlinkError.Parse(message.Payload, message.Flags);
                    if (error.Errno == Errno.ENOENT)
                    {
                        ownership = SocketOwnership.NoSocket;
                        return true;
                    }

                    throw error.IsAck
                        ? new NetlinkFormatException($"the kernel acknowledged the lookup of {flow} without reporting a socket")
                        : new NetlinkException(Operation, error.Errno, error.Message, $"cannot look up {flow}");
                default:
                    throw new NetlinkFormatException(
                        $"netlink message type {message.Type} in the answer to the lookup of {flow}: expected SOCK_DIAG_BY_FAMILY ({SockDiagConstants.SOCK_DIAG_BY_FAMILY}) or NLMSG_ERROR");
            }
        }

        ownership = default;
        return false;
    }

    /// <summary>Checks the reported socket (<c>struct inet_diag_msg</c>) against the flow asked about and says what it means.</summary>
    private static SocketOwnership ReadSocket(ReadOnlySpan<byte> payload, TcpFlow flow)
    {
        if (payload.Length < InetDiagMsgLayout.Size)
        {
            throw new NetlinkFormatException($"inet_diag_msg of {payload.Length} bytes in the answer for {flow}, needs {InetDiagMsgLayout.Size}");
        }

        byte family = payload[InetDiagMsgLayout.idiag_family];
        bool familyFits = flow.IsIPv6 ? family == MptcpConstants.AF_INET6 : family is MptcpConstants.AF_INET or MptcpConstants.AF_INET6;
        if (!familyFits)
        {
            throw new NetlinkFormatException($"the socket found for {flow} has address family {family}");
        }

        byte state = payload[InetDiagMsgLayout.idiag_state];
        if (state is 0 or > TcpStates.TCP_BOUND_INACTIVE)
        {
            throw new NetlinkFormatException($"the socket found for {flow} has TCP state {state}, which is none of the kernel's");
        }

        ReadOnlySpan<byte> id = payload.Slice(InetDiagMsgLayout.id, Size);
        ushort localPort = BinaryPrimitives.ReadUInt16BigEndian(id[idiag_sport..]);
        if (localPort != flow.ServerPort)
        {
            throw new NetlinkFormatException($"the socket found for {flow} has local port {localPort}");
        }

        // A listener's remote end is empty and its local address may be a wildcard: only its port is the flow's.
        if (state == TcpStates.TCP_LISTEN)
        {
            return SocketOwnership.ListenerOnly;
        }

        ushort remotePort = BinaryPrimitives.ReadUInt16BigEndian(id[idiag_dport..]);
        if (remotePort != flow.ClientPort)
        {
            throw new NetlinkFormatException($"the socket found for {flow} has remote port {remotePort}");
        }

        CheckAddress(id.Slice(idiag_src, 16), family, flow.ServerAddress, "local", flow);
        CheckAddress(id.Slice(idiag_dst, 16), family, flow.ClientAddress, "remote", flow);
        return SocketOwnership.Of((TcpState)state);
    }

    /// <summary>
    /// An <c>AF_INET</c> socket reports its IPv4 address in the first 4 bytes; an <c>AF_INET6</c> one reports all 16, an
    /// IPv4 connection on a dual-stack socket as <c>::ffff:a.b.c.d</c>.
    /// </summary>
    private static void CheckAddress(ReadOnlySpan<byte> reported, byte family, IPAddress expected, string end, TcpFlow flow)
    {
        Span<byte> wanted = stackalloc byte[16];
        int length = WriteAddress(expected, wanted);
        bool same = (length, family) switch
        {
            (16, _) => reported.SequenceEqual(wanted),
            (_, MptcpConstants.AF_INET) => reported[..4].SequenceEqual(wanted[..4]),
            _ => reported[..10].IndexOfAnyExcept((byte)0) < 0 && reported[10] == 0xff && reported[11] == 0xff && reported[12..].SequenceEqual(wanted[..4]),
        };
        if (!same)
        {
            var address = new IPAddress(family == MptcpConstants.AF_INET ? reported[..4] : reported);
            throw new NetlinkFormatException($"the socket found for {flow} has {end} address {address}");
        }
    }

    /// <summary>Writes an address in network order into a 16-byte field (an IPv4 one in its first 4 bytes); returns 4 or 16.</summary>
    private static int WriteAddress(IPAddress address, Span<byte> sixteen) =>
        address.TryWriteBytes(sixteen, out int written) ? written : throw new ArgumentException($"{address} does not fit 16 bytes", nameof(address));

    private static Span<byte> WriteRequestHeader(ref NetlinkWriter writer, int family, uint states)
    {
        Span<byte> request = writer.WriteFixedHeader(InetDiagReqV2Layout.Size);
        request[InetDiagReqV2Layout.sdiag_family] = (byte)family;
        request[InetDiagReqV2Layout.sdiag_protocol] = MptcpConstants.IPPROTO_TCP;
        BinaryPrimitives.WriteUInt32LittleEndian(request[InetDiagReqV2Layout.idiag_states..], states);
        return request;
    }

    /// <summary>
    /// A dump of no states: the kernel resolves the TCP handler (loading <c>tcp_diag</c> if it can) and ends with
    /// <c>NLMSG_DONE</c>, or answers <c>ENOENT</c> when it has no TCP diagnostics at all.
    /// </summary>
    private void CheckTcpDiagnostics()
    {
        uint sequence = ++_sequence;
        Span<byte> request = stackalloc byte[RequestSize];
        var writer = new NetlinkWriter(request);
        writer.BeginMessage(SockDiagConstants.SOCK_DIAG_BY_FAMILY, NetlinkConstants.NLM_F_REQUEST | NetlinkConstants.NLM_F_DUMP, sequence);
        WriteRequestHeader(ref writer, MptcpConstants.AF_INET, states: 0);
        writer.EndMessage();
        Send(writer.Written);
        while (true)
        {
            var reader = new NetlinkMessageReader(_answer.AsSpan(0, Receive()));
            while (reader.TryRead(out NetlinkMessage message))
            {
                if (message.Sequence != sequence)
                {
                    continue;
                }

                int errno = message.Type switch
                {
                    NetlinkConstants.NLMSG_DONE => NetlinkError.ReadDoneErrno(message.Payload),
                    NetlinkConstants.NLMSG_ERROR => NetlinkError.Parse(message.Payload, message.Flags).Errno,
                    _ => -1,
                };
                if (errno == 0)
                {
                    return;
                }

                if (errno > 0)
                {
                    throw new NetlinkException(Operation, errno, explanation: errno == Errno.ENOENT
                        ? "the kernel has no TCP socket diagnostics (modules inet_diag and tcp_diag), so it cannot tell which flows are this host's"
                        : "cannot query the TCP socket table");
                }
            }
        }
    }

    private void Send(ReadOnlySpan<byte> request)
    {
        int sent = NativeSocket.Send(_socket.Socket.SafeHandle, request);
        if (sent < 0)
        {
            throw new NetlinkException(Operation, -sent, explanation: "cannot send the request");
        }
    }

    /// <summary>Receives one datagram into the answer buffer; returns its length.</summary>
    private int Receive()
    {
        int received = NativeSocket.Receive(_socket.Socket.SafeHandle, _answer);
        return received >= 0 ? received : throw -received switch
        {
            Errno.EAGAIN => new NetlinkException(Operation, Errno.ETIMEDOUT, null, $"no answer from the kernel within {Timeout.TotalSeconds:0.###} s"),
            Errno.ENOBUFS => new NetlinkException(Operation, Errno.ENOBUFS, null, "an answer did not fit the socket's receive buffer and was dropped"),
            int errno => new NetlinkException(Operation, errno),
        };
    }
}
