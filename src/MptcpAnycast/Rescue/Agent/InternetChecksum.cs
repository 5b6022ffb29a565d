using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace MptcpAnycast.Rescue.Agent;

/// <summary>The Internet checksum (RFC 1071) of headers and of TCP segments with their pseudo-header.</summary>
internal static class InternetChecksum
{
    /// <summary>The checksum of <paramref name="data"/> on top of a partial <paramref name="sum"/>.</summary>
    public static ushort Compute(ReadOnlySpan<byte> data, ulong sum) => Fold(Add(data, sum));

    /// <summary>The TCP or UDP checksum of <paramref name="segment"/> (whose checksum field is zero) from source to destination.</summary>
    public static ushort Transport(IPAddress source, IPAddress destination, byte protocol, ReadOnlySpan<byte> segment)
    {
        Span<byte> pseudo = stackalloc byte[40];
        int length;
        if (source.AddressFamily == AddressFamily.InterNetworkV6)
        {
            source.TryWriteBytes(pseudo, out _);
            destination.TryWriteBytes(pseudo[16..], out _);
            BinaryPrimitives.WriteUInt32BigEndian(pseudo[32..], (uint)segment.Length);
            pseudo[36] = pseudo[37] = pseudo[38] = 0;
            pseudo[39] = protocol;
            length = 40;
        }
        else
        {
            source.TryWriteBytes(pseudo, out _);
            destination.TryWriteBytes(pseudo[4..], out _);
            pseudo[8] = 0;
            pseudo[9] = protocol;
            BinaryPrimitives.WriteUInt16BigEndian(pseudo[10..], (ushort)segment.Length);
            length = 12;
        }

        return Fold(Add(segment, Add(pseudo[..length], 0)));
    }

    private static ulong Add(ReadOnlySpan<byte> data, ulong sum)
    {
        int i = 0;
        for (; i + 1 < data.Length; i += 2)
        {
            sum += BinaryPrimitives.ReadUInt16BigEndian(data[i..]);
        }

        if (i < data.Length)
        {
            sum += (ulong)data[i] << 8;
        }

        return sum;
    }

    private static ushort Fold(ulong sum)
    {
        while (sum > 0xffff)
        {
            sum = (sum & 0xffff) + (sum >> 16);
        }

        return (ushort)~sum;
    }
}
