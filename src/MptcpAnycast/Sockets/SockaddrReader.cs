using System.Buffers.Binary;
using System.Net;
using MptcpAnycast.Interop;

namespace MptcpAnycast;

/// <summary>Reads C <c>sockaddr_in</c> / <c>sockaddr_in6</c> bytes (host-order family, network-order port).</summary>
internal static class SockaddrReader
{
    public static IPEndPoint? Parse(ReadOnlySpan<byte> sockaddr)
    {
        if (sockaddr.Length < 2)
        {
            return null;
        }

        ushort family = BinaryPrimitives.ReadUInt16LittleEndian(sockaddr);
        if (family == MptcpConstants.AF_INET && sockaddr.Length >= 8)
        {
            int port = BinaryPrimitives.ReadUInt16BigEndian(sockaddr[2..]);
            return new IPEndPoint(new IPAddress(sockaddr.Slice(4, 4)), port);
        }

        if (family == MptcpConstants.AF_INET6 && sockaddr.Length >= 28)
        {
            int port = BinaryPrimitives.ReadUInt16BigEndian(sockaddr[2..]);
            uint scope = BinaryPrimitives.ReadUInt32LittleEndian(sockaddr[24..]);
            return new IPEndPoint(new IPAddress(sockaddr.Slice(8, 16), scope), port);
        }

        return null;
    }
}
