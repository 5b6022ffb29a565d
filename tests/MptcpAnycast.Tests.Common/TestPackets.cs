using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace MptcpAnycast.Tests.Common;

/// <summary>
/// Ethernet frames with IPv4/IPv6 and TCP or ICMP headers and valid checksums, for BPF_PROG_TEST_RUN: shared by the
/// rescue program's tests and its decision benchmark (benchmarks/MptcpAnycast.Benchmarks, rescue-decision), so that
/// both run the program on the same frames.
/// </summary>
public static class TestPackets
{
    public const int EthernetLength = 14;
    public const ushort Syn = 0x02, Rst = 0x04, Ack = 0x10;

    public static byte[] Tcp(IPAddress source, int sourcePort, IPAddress destination, int destinationPort, ushort flags,
        uint seq = 1000, uint ack = 2000, int payload = 10, byte[]? options = null)
    {
        options ??= [];
        int tcpLength = 20 + options.Length + payload;
        byte[] tcp = new byte[tcpLength];
        BinaryPrimitives.WriteUInt16BigEndian(tcp, (ushort)sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(tcp.AsSpan(2), (ushort)destinationPort);
        BinaryPrimitives.WriteUInt32BigEndian(tcp.AsSpan(4), seq);
        BinaryPrimitives.WriteUInt32BigEndian(tcp.AsSpan(8), ack);
        tcp[12] = (byte)(((20 + options.Length) / 4) << 4);
        tcp[13] = (byte)flags;
        BinaryPrimitives.WriteUInt16BigEndian(tcp.AsSpan(14), 65535);
        options.CopyTo(tcp, 20);
        for (int i = 0; i < payload; i++)
        {
            tcp[20 + options.Length + i] = (byte)i;
        }

        BinaryPrimitives.WriteUInt16BigEndian(tcp.AsSpan(16), TransportChecksum(source, destination, 6, tcp));
        return Ip(source, destination, 6, tcp);
    }

    /// <summary>An IP packet (no Ethernet header) around <paramref name="payload"/>.</summary>
    public static byte[] IpPacket(IPAddress source, IPAddress destination, byte protocol, byte[] payload, ushort fragment = 0x4000)
    {
        if (source.AddressFamily == AddressFamily.InterNetwork)
        {
            byte[] packet = new byte[20 + payload.Length];
            packet[0] = 0x45;
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(2), (ushort)packet.Length);
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(6), fragment);
            packet[8] = 64;
            packet[9] = protocol;
            source.TryWriteBytes(packet.AsSpan(12), out _);
            destination.TryWriteBytes(packet.AsSpan(16), out _);
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(10), Fold(Sum(packet.AsSpan(0, 20))));
            payload.CopyTo(packet, 20);
            return packet;
        }
        else
        {
            byte[] packet = new byte[40 + payload.Length];
            packet[0] = 0x60;
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(4), (ushort)payload.Length);
            packet[6] = protocol;
            packet[7] = 64;
            source.TryWriteBytes(packet.AsSpan(8), out _);
            destination.TryWriteBytes(packet.AsSpan(24), out _);
            payload.CopyTo(packet, 40);
            return packet;
        }
    }

    public static byte[] Ip(IPAddress source, IPAddress destination, byte protocol, byte[] payload, ushort fragment = 0x4000) =>
        Ethernet(IpPacket(source, destination, protocol, payload, fragment), source.AddressFamily == AddressFamily.InterNetworkV6);

    public static byte[] Ethernet(byte[] ipPacket, bool ipv6)
    {
        byte[] frame = new byte[EthernetLength + ipPacket.Length];
        frame[0] = 0x02; frame[5] = 0x01; // destination MAC 02:00:00:00:00:01
        frame[6] = 0x02; frame[11] = 0x02;
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(12), ipv6 ? (ushort)0x86dd : (ushort)0x0800);
        ipPacket.CopyTo(frame, EthernetLength);
        return frame;
    }

    /// <summary>An ICMP (or ICMPv6) error that quotes <paramref name="quoted"/> (an IP packet).</summary>
    public static byte[] IcmpError(IPAddress source, IPAddress destination, byte type, byte code, byte[] quoted)
    {
        bool v6 = source.AddressFamily == AddressFamily.InterNetworkV6;
        byte[] icmp = new byte[8 + quoted.Length];
        icmp[0] = type;
        icmp[1] = code;
        quoted.CopyTo(icmp, 8);
        ushort sum = v6 ? TransportChecksum(source, destination, 58, icmp) : Fold(Sum(icmp));
        BinaryPrimitives.WriteUInt16BigEndian(icmp.AsSpan(2), sum);
        return Ip(source, destination, v6 ? (byte)58 : (byte)1, icmp);
    }

    public static ushort TransportChecksum(IPAddress source, IPAddress destination, byte protocol, ReadOnlySpan<byte> segment)
    {
        byte[] src = source.GetAddressBytes(), dst = destination.GetAddressBytes();
        byte[] pseudo = new byte[src.Length + dst.Length + 8];
        src.CopyTo(pseudo, 0);
        dst.CopyTo(pseudo, src.Length);
        if (src.Length == 4)
        {
            pseudo[9] = protocol;
            BinaryPrimitives.WriteUInt16BigEndian(pseudo.AsSpan(10), (ushort)segment.Length);
            pseudo = pseudo[..12];
        }
        else
        {
            BinaryPrimitives.WriteUInt32BigEndian(pseudo.AsSpan(32), (uint)segment.Length);
            pseudo[39] = protocol;
        }

        return Fold(Sum(pseudo) + Sum(segment, zeroAt: 16));
    }

    /// <summary>Whether an IPv4 header or a TCP segment (with its pseudo-header) sums to all ones.</summary>
    public static bool Ipv4HeaderChecksumValid(ReadOnlySpan<byte> header) => Fold(Sum(header)) == 0;

    public static ulong Sum(ReadOnlySpan<byte> data, int zeroAt = -1)
    {
        ulong sum = 0;
        for (int i = 0; i < data.Length; i += 2)
        {
            bool zeroed = zeroAt >= 0 && i == zeroAt;
            int hi = zeroed ? 0 : data[i];
            int lo = i + 1 < data.Length && !zeroed ? data[i + 1] : 0;
            sum += (ulong)((hi << 8) | lo);
        }

        return sum;
    }

    public static ushort Fold(ulong sum)
    {
        while (sum > 0xffff)
        {
            sum = (sum & 0xffff) + (sum >> 16);
        }

        return (ushort)~sum;
    }
}
