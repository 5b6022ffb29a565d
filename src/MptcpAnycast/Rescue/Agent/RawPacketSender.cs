using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Interop;

namespace MptcpAnycast.Rescue.Agent;

/// <summary>
/// The packets the agent sends itself, through raw sockets of the POP's network namespace: segments that waited for
/// their owner to be found, sent on in an IPIP or IP6IP6 packet (the kernel adds the outer header for a raw socket
/// of protocol 4 or 41; the owner's program takes it off again), and the RST for a flow that no POP owns.
/// </summary>
internal sealed class RawPacketSender : IDisposable
{
    private const int IpipProtocol = 4;
    private const int Ipv6InIpv6Protocol = 41;
    private const int IpprotoIp = 0, IpHdrincl = 3; // linux/in.h
    private const int IpprotoIpv6 = 41, Ipv6Hdrincl = 36; // linux/in6.h (Linux 4.5+)
    private const int IpMtuDiscover = 10, PmtuDiscDo = 2; // linux/in.h
    private const int Ipv6Dontfrag = 62; // linux/in6.h

    private readonly Socket? _ipip;
    private readonly Socket? _ip6ip6;
    private readonly Socket _reset4;
    private readonly Socket _reset6;
    private readonly Lock _gate = new();

    /// <param name="localIPv4">The tunnel source for IPv4 owners (this POP's unicast), or null when it has none.</param>
    /// <param name="localIPv6">The tunnel source for IPv6 owners, or null.</param>
    public RawPacketSender(IPAddress? localIPv4, IPAddress? localIPv6)
    {
        try
        {
            _ipip = localIPv4 is null ? null : Open(AddressFamily.InterNetwork, IpipProtocol, localIPv4);
            _ip6ip6 = localIPv6 is null ? null : Open(AddressFamily.InterNetworkV6, Ipv6InIpv6Protocol, localIPv6);
            // As the program's tunnel: never fragment (a path that drops fragments would lose them unseen); a held
            // segment too large for the path is dropped here and the client sends it again.
            if (_ipip is not null)
            {
                SetOption(_ipip, IpprotoIp, IpMtuDiscover, PmtuDiscDo);
            }

            if (_ip6ip6 is not null)
            {
                SetOption(_ip6ip6, IpprotoIpv6, Ipv6Dontfrag, 1);
            }
            _reset4 = Open(AddressFamily.InterNetwork, (int)ProtocolType.Tcp, null);
            SetOption(_reset4, IpprotoIp, IpHdrincl, 1);
            _reset6 = Open(AddressFamily.InterNetworkV6, (int)ProtocolType.Tcp, null);
            SetOption(_reset6, IpprotoIpv6, Ipv6Hdrincl, 1);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Sends <paramref name="packet"/> (an IP packet) to <paramref name="owner"/> inside an outer header.</summary>
    /// <returns>False when this POP has no unicast address of the owner's family or the packet's family differs.</returns>
    public bool SendEncapsulated(IPAddress owner, ReadOnlySpan<byte> packet)
    {
        if (packet.IsEmpty)
        {
            return false;
        }

        bool ipv6Owner = owner.AddressFamily == AddressFamily.InterNetworkV6;
        bool ipv6Packet = packet[0] >> 4 == 6;
        Socket? socket = ipv6Owner ? _ip6ip6 : _ipip;
        if (socket is null || ipv6Owner != ipv6Packet)
        {
            return false;
        }

        byte[] copy = packet.ToArray();
        CompleteTcpChecksum(copy);
        try
        {
            lock (_gate)
            {
                socket.SendTo(copy, SocketFlags.None, new IPEndPoint(owner, 0));
            }
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.MessageSize)
        {
            return false;
        }

        return true;
    }

    /// <summary>
    /// Computes the TCP checksum of a held IP packet again. A segment the kernel received with checksum offload
    /// (CHECKSUM_PARTIAL, as from a local veth) holds only the pseudo-header sum in its checksum field; the program's
    /// tunnel keeps that state with the packet, but a copy sent from userspace must carry the full checksum or the
    /// owner drops it (TcpInErrs).
    /// </summary>
    internal static void CompleteTcpChecksum(Span<byte> packet)
    {
        bool ipv6 = packet.Length > 0 && packet[0] >> 4 == 6;
        int header = ipv6 ? 40 : (packet[0] & 0x0f) * 4;
        int protocol = ipv6 ? packet[6] : packet[9];
        if (protocol != (int)ProtocolType.Tcp || packet.Length < header + 20)
        {
            return;
        }

        int total = ipv6 ? 40 + BinaryPrimitives.ReadUInt16BigEndian(packet[4..]) : BinaryPrimitives.ReadUInt16BigEndian(packet[2..]);
        if (total > packet.Length || total < header + 20)
        {
            return;
        }

        Span<byte> tcp = packet[header..total];
        IPAddress source = ipv6 ? new IPAddress(packet.Slice(8, 16)) : new IPAddress(packet.Slice(12, 4));
        IPAddress destination = ipv6 ? new IPAddress(packet.Slice(24, 16)) : new IPAddress(packet.Slice(16, 4));
        tcp[16] = tcp[17] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(tcp[16..], InternetChecksum.Transport(source, destination, (byte)ProtocolType.Tcp, tcp));
    }

    /// <summary>
    /// Sends the client a RST for <paramref name="miss"/>'s flow from the server's (anycast) address. When the
    /// client's segment acknowledged data, the RST's sequence is that acknowledgement: exactly what the client
    /// expects next, so it accepts the reset (RFC 5961 §3.2).
    /// </summary>
    public void SendReset(RescueMiss miss)
    {
        byte[] packet = BuildReset(miss);
        Socket socket = miss.Flow.IsIPv6 ? _reset6 : _reset4;
        lock (_gate)
        {
            socket.SendTo(packet, SocketFlags.None, new IPEndPoint(miss.Flow.ClientAddress, 0));
        }
    }

    /// <summary>The RST as a whole IP packet, server to client, checksums filled in.</summary>
    internal static byte[] BuildReset(RescueMiss miss)
    {
        TcpFlow flow = miss.Flow;
        int ipLength = flow.IsIPv6 ? 40 : 20;
        byte[] packet = new byte[ipLength + 20];
        Span<byte> tcp = packet.AsSpan(ipLength);
        BinaryPrimitives.WriteUInt16BigEndian(tcp, flow.ServerPort);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[2..], flow.ClientPort);
        if (miss.HasAck)
        {
            BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], miss.AcknowledgementSequence);
            tcp[13] = (byte)RescueMiss.Rst;
        }
        else
        {
            // No acknowledgement to take a sequence from: RST+ACK of what the client sent (RFC 9293 §3.10.7.1).
            int payload = PayloadLength(miss);
            BinaryPrimitives.WriteUInt32BigEndian(tcp[8..], unchecked(miss.Sequence + (uint)payload));
            tcp[13] = (byte)(RescueMiss.Rst | RescueMiss.Ack);
        }

        tcp[12] = 5 << 4;
        Span<byte> ip = packet.AsSpan(0, ipLength);
        if (flow.IsIPv6)
        {
            ip[0] = 0x60;
            BinaryPrimitives.WriteUInt16BigEndian(ip[4..], 20);
            ip[6] = (byte)ProtocolType.Tcp;
            ip[7] = 64;
            flow.ServerAddress.TryWriteBytes(ip[8..], out _);
            flow.ClientAddress.TryWriteBytes(ip[24..], out _);
        }
        else
        {
            ip[0] = 0x45;
            BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)packet.Length);
            BinaryPrimitives.WriteUInt16BigEndian(ip[6..], 0x4000);
            ip[8] = 64;
            ip[9] = (byte)ProtocolType.Tcp;
            flow.ServerAddress.TryWriteBytes(ip[12..], out _);
            flow.ClientAddress.TryWriteBytes(ip[16..], out _);
            BinaryPrimitives.WriteUInt16BigEndian(ip[10..], InternetChecksum.Compute(ip, 0));
        }

        ushort sum = InternetChecksum.Transport(flow.ServerAddress, flow.ClientAddress, (byte)ProtocolType.Tcp, tcp);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[16..], sum);
        return packet;
    }

    public void Dispose()
    {
        _ipip?.Dispose();
        _ip6ip6?.Dispose();
        _reset4?.Dispose();
        _reset6?.Dispose();
    }

    private static int PayloadLength(RescueMiss miss)
    {
        if (miss.Held is not { Length: > 0 } held)
        {
            return 0;
        }

        int ip = miss.Flow.IsIPv6 ? 40 : (held[0] & 0x0f) * 4;
        int total = miss.Flow.IsIPv6 ? 40 + BinaryPrimitives.ReadUInt16BigEndian(held.AsSpan(4)) : BinaryPrimitives.ReadUInt16BigEndian(held.AsSpan(2));
        int tcp = held.Length > ip + 12 ? (held[ip + 12] >> 4) * 4 : 20;
        return Math.Max(0, total - ip - tcp);
    }

    // Through libc: .NET does not map HeaderIncluded for IPv6, nor these options.
    private static void SetOption(Socket socket, int level, int option, int value)
    {
        int errno = NativeSocket.SetInt(socket.SafeHandle, level, option, value);
        if (errno != 0)
        {
            throw new SocketException(errno);
        }
    }

    private static Socket Open(AddressFamily family, int protocol, IPAddress? bindTo)
    {
        // From libc: .NET maps only the protocols it knows and refuses 4 and 41.
        int domain = family == AddressFamily.InterNetworkV6 ? 10 : 2;
        int fd = NativeSocket.Create(domain, Tmds.Linux.LibC.SOCK_RAW, protocol);
        if (fd < 0)
        {
            throw new SocketException(-fd);
        }

        Socket socket = NativeSocket.Wrap(fd);
        try
        {
            // Send-only: a raw socket also gets a copy of every packet of its protocol; a filter that accepts
            // nothing keeps them from queueing up unread.
            ReadOnlySpan<SocketFilterInstruction> dropAll = [SocketFilterInstruction.Statement(SocketFilterConstants.BPF_RET | SocketFilterConstants.BPF_K, 0)];
            int errno = NativeSocket.AttachFilter(socket.SafeHandle, dropAll);
            if (errno != 0)
            {
                throw new SocketException(errno);
            }
            if (bindTo is not null)
            {
                socket.Bind(new IPEndPoint(bindTo, 0));
            }

            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}
