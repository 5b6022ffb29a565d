using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace MptcpAnycast.Rescue.Peers;

/// <summary>What a peer-lookup datagram is: a question about a flow, or the reply to one.</summary>
internal enum PeerMessageType : byte
{
    Query = 1,
    Answer = 2,
}

/// <summary>An answer's verdict on the flow it was asked about; a query carries <see cref="None"/>.</summary>
internal enum PeerVerdict : byte
{
    None = 0,
    Owned = 1,
    NotOwned = 2,
}

/// <summary>
/// One peer-lookup message without its sender name and MAC (the codec adds and checks those): the type, the sender's
/// sequence number (replay protection), the query id an answer echoes, the flow, and an answer's verdict.
/// </summary>
internal readonly record struct PeerMessage(PeerMessageType Type, ulong Sequence, uint QueryId, WireFlow Flow, PeerVerdict Verdict);

/// <summary>
/// A <see cref="TcpFlow"/> as the wire carries it: the family and the two addresses as big-endian integers (an IPv4
/// address in the low 32 bits), so that a decoded answer can be matched to its query without making
/// <see cref="IPAddress"/> objects. <see cref="ToTcpFlow"/> makes them when a handler needs the flow.
/// </summary>
internal readonly record struct WireFlow(bool IsIPv6, UInt128 ClientAddress, ushort ClientPort, UInt128 ServerAddress, ushort ServerPort)
{
    /// <summary>Bytes one address takes on the wire.</summary>
    public int AddressLength => IsIPv6 ? 16 : 4;

    public static WireFlow From(TcpFlow flow) =>
        new(flow.IsIPv6, AddressBits.Read(flow.ClientAddress), flow.ClientPort, AddressBits.Read(flow.ServerAddress), flow.ServerPort);

    public TcpFlow ToTcpFlow() =>
        new(AddressBits.ToIPAddress(ClientAddress, IsIPv6), ClientPort, AddressBits.ToIPAddress(ServerAddress, IsIPv6), ServerPort);

    public override string ToString() => ToTcpFlow().ToString();
}

/// <summary>IP addresses as 128-bit big-endian integers: compared and copied without allocating.</summary>
internal static class AddressBits
{
    private static readonly UInt128 MappedPrefix = (UInt128)0xFFFF << 32;

    /// <summary>The address's bytes as an integer: 32 significant bits for IPv4, 128 for IPv6.</summary>
    public static UInt128 Read(IPAddress address)
    {
        Span<byte> bytes = stackalloc byte[16];
        if (!address.TryWriteBytes(bytes, out int written))
        {
            throw new ArgumentException($"cannot read the bytes of {address}", nameof(address));
        }

        return Read(bytes[..written]);
    }

    /// <summary>4 or 16 big-endian bytes as an integer.</summary>
    public static UInt128 Read(ReadOnlySpan<byte> bytes) =>
        bytes.Length == 4 ? BinaryPrimitives.ReadUInt32BigEndian(bytes) : BinaryPrimitives.ReadUInt128BigEndian(bytes);

    /// <summary>Writes 4 (IPv4) or 16 (IPv6) big-endian bytes.</summary>
    public static void Write(UInt128 value, bool ipv6, Span<byte> destination)
    {
        if (ipv6)
        {
            BinaryPrimitives.WriteUInt128BigEndian(destination, value);
        }
        else
        {
            BinaryPrimitives.WriteUInt32BigEndian(destination, (uint)value);
        }
    }

    public static IPAddress ToIPAddress(UInt128 value, bool ipv6)
    {
        Span<byte> bytes = stackalloc byte[16];
        Write(value, ipv6, bytes);
        return new IPAddress(bytes[..(ipv6 ? 16 : 4)]);
    }

    /// <summary>True for an IPv6 address in ::ffff:0:0/96, which a <see cref="TcpFlow"/> never holds (it keeps those as IPv4).</summary>
    public static bool IsIPv4Mapped(UInt128 ipv6) => ipv6 >> 32 == 0xFFFF;

    /// <summary>
    /// One spelling for a datagram source of either family: IPv4 as IPv4-mapped IPv6, IPv6 as itself, so that one
    /// comparison serves sockets of both families.
    /// </summary>
    public static UInt128 SourceKey(IPAddress address)
    {
        address = address.Unmapped();
        UInt128 bits = Read(address);
        return address.AddressFamily == AddressFamily.InterNetwork ? MappedPrefix | bits : bits;
    }

    /// <summary>
    /// <see cref="SourceKey(IPAddress)"/> of a received datagram's source, read from the socket address in place
    /// (sockaddr_in keeps the address at offset 4, sockaddr_in6 at offset 8); false for another family.
    /// </summary>
    public static bool TrySourceKey(SocketAddress source, out UInt128 key)
    {
        ReadOnlySpan<byte> raw = source.Buffer.Span[..source.Size];
        switch (source.Family)
        {
            case AddressFamily.InterNetwork when raw.Length >= 8:
                key = MappedPrefix | BinaryPrimitives.ReadUInt32BigEndian(raw[4..8]);
                return true;
            case AddressFamily.InterNetworkV6 when raw.Length >= 24:
                key = BinaryPrimitives.ReadUInt128BigEndian(raw[8..24]);
                return true;
            default:
                key = default;
                return false;
        }
    }
}
