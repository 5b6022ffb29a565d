using System.Buffers.Binary;
using System.Security.Cryptography;

namespace MptcpAnycast.Rescue.Peers;

/// <summary>
/// The peer-lookup wire format (docs/rescue-peer-protocol.md): big-endian, one datagram per message, the fixed fields
/// first so that every length is known from bytes 2 and 4, then the sender's name, then an HMAC-SHA256 truncated to
/// 16 bytes over everything before it. Encoding and reading allocate nothing; reading never throws on input.
/// </summary>
internal static class PeerMessageCodec
{
    public const byte Version = 1;
    public const int MaxNameLength = 32;
    public const int MacLength = 16;

    public const int VersionOffset = 0;
    public const int TypeOffset = 1;
    public const int FamilyOffset = 2;
    public const int VerdictOffset = 3;
    public const int NameLengthOffset = 4;
    public const int SequenceOffset = 5;
    public const int QueryIdOffset = 13;
    public const int ClientPortOffset = 17;
    public const int ServerPortOffset = 19;
    public const int AddressesOffset = 21;

    /// <summary>An IPv4 flow and a one-byte name.</summary>
    public const int MinLength = AddressesOffset + (2 * 4) + 1 + MacLength;

    /// <summary>An IPv6 flow and a name of <see cref="MaxNameLength"/> bytes.</summary>
    public const int MaxLength = AddressesOffset + (2 * 16) + MaxNameLength + MacLength;

    public const byte FamilyIPv4 = 4;
    public const byte FamilyIPv6 = 6;

    /// <summary>The length of a message with this flow family and sender-name length.</summary>
    public static int LengthOf(bool ipv6, int nameLength) => AddressesOffset + (2 * (ipv6 ? 16 : 4)) + nameLength + MacLength;

    /// <summary>
    /// Writes <paramref name="message"/> from <paramref name="senderName"/> (ASCII, see <see cref="IsValidName(ReadOnlySpan{byte})"/>)
    /// and its MAC under <paramref name="key"/>; returns the datagram's length. Invalid arguments are the caller's bug
    /// and throw.
    /// </summary>
    public static int Encode(Span<byte> destination, ReadOnlySpan<byte> senderName, in PeerMessage message, ReadOnlySpan<byte> key)
    {
        if (!IsValidName(senderName))
        {
            throw new ArgumentException("the sender name is not 1 to 32 letters, digits, '-', '.' or '_'", nameof(senderName));
        }

        if (!IsValidVerdict(message.Type, message.Verdict))
        {
            throw new ArgumentException($"a {message.Type} cannot carry the verdict {message.Verdict}", nameof(message));
        }

        WireFlow flow = message.Flow;
        if (flow.IsIPv6 && (AddressBits.IsIPv4Mapped(flow.ClientAddress) || AddressBits.IsIPv4Mapped(flow.ServerAddress)))
        {
            throw new ArgumentException("an IPv6 flow cannot hold IPv4-mapped addresses", nameof(message));
        }

        int addressLength = flow.AddressLength;
        int length = LengthOf(flow.IsIPv6, senderName.Length);
        if (destination.Length < length)
        {
            throw new ArgumentException($"the message takes {length} bytes; the buffer has {destination.Length}", nameof(destination));
        }

        destination[VersionOffset] = Version;
        destination[TypeOffset] = (byte)message.Type;
        destination[FamilyOffset] = flow.IsIPv6 ? FamilyIPv6 : FamilyIPv4;
        destination[VerdictOffset] = (byte)message.Verdict;
        destination[NameLengthOffset] = (byte)senderName.Length;
        BinaryPrimitives.WriteUInt64BigEndian(destination[SequenceOffset..], message.Sequence);
        BinaryPrimitives.WriteUInt32BigEndian(destination[QueryIdOffset..], message.QueryId);
        BinaryPrimitives.WriteUInt16BigEndian(destination[ClientPortOffset..], flow.ClientPort);
        BinaryPrimitives.WriteUInt16BigEndian(destination[ServerPortOffset..], flow.ServerPort);
        AddressBits.Write(flow.ClientAddress, flow.IsIPv6, destination[AddressesOffset..]);
        AddressBits.Write(flow.ServerAddress, flow.IsIPv6, destination[(AddressesOffset + addressLength)..]);
        int nameOffset = AddressesOffset + (2 * addressLength);
        senderName.CopyTo(destination[nameOffset..]);
        int macOffset = nameOffset + senderName.Length;
        ComputeMac(destination[..macOffset], key, destination.Slice(macOffset, MacLength));
        return length;
    }

    /// <summary>
    /// Checks the structure of <paramref name="datagram"/> and reads it, without looking at the MAC: the result is
    /// not to be trusted until <see cref="VerifyMac"/> says so. <paramref name="senderName"/> points into the datagram.
    /// </summary>
    public static PeerMessageStatus Read(ReadOnlySpan<byte> datagram, out PeerMessage message, out ReadOnlySpan<byte> senderName)
    {
        message = default;
        senderName = default;
        if (datagram.Length < MinLength)
        {
            return PeerMessageStatus.TooShort;
        }

        if (datagram.Length > MaxLength)
        {
            return PeerMessageStatus.TooLong;
        }

        if (datagram[VersionOffset] != Version)
        {
            return PeerMessageStatus.BadVersion;
        }

        var type = (PeerMessageType)datagram[TypeOffset];
        if (type is not (PeerMessageType.Query or PeerMessageType.Answer))
        {
            return PeerMessageStatus.BadType;
        }

        byte family = datagram[FamilyOffset];
        if (family is not (FamilyIPv4 or FamilyIPv6))
        {
            return PeerMessageStatus.BadFlow;
        }

        int nameLength = datagram[NameLengthOffset];
        if (nameLength is 0 or > MaxNameLength)
        {
            return PeerMessageStatus.BadName;
        }

        bool ipv6 = family == FamilyIPv6;
        int expected = LengthOf(ipv6, nameLength);
        if (datagram.Length != expected)
        {
            return datagram.Length < expected ? PeerMessageStatus.TooShort : PeerMessageStatus.TooLong;
        }

        var verdict = (PeerVerdict)datagram[VerdictOffset];
        if (!IsValidVerdict(type, verdict))
        {
            return PeerMessageStatus.BadVerdict;
        }

        int addressLength = ipv6 ? 16 : 4;
        int nameOffset = AddressesOffset + (2 * addressLength);
        ReadOnlySpan<byte> name = datagram.Slice(nameOffset, nameLength);
        if (!IsValidName(name))
        {
            return PeerMessageStatus.BadName;
        }

        UInt128 client = AddressBits.Read(datagram.Slice(AddressesOffset, addressLength));
        UInt128 server = AddressBits.Read(datagram.Slice(AddressesOffset + addressLength, addressLength));
        if (ipv6 && (AddressBits.IsIPv4Mapped(client) || AddressBits.IsIPv4Mapped(server)))
        {
            return PeerMessageStatus.BadFlow;
        }

        var flow = new WireFlow(
            ipv6,
            client,
            BinaryPrimitives.ReadUInt16BigEndian(datagram[ClientPortOffset..]),
            server,
            BinaryPrimitives.ReadUInt16BigEndian(datagram[ServerPortOffset..]));
        message = new PeerMessage(
            type,
            BinaryPrimitives.ReadUInt64BigEndian(datagram[SequenceOffset..]),
            BinaryPrimitives.ReadUInt32BigEndian(datagram[QueryIdOffset..]),
            flow,
            verdict);
        senderName = name;
        return PeerMessageStatus.Ok;
    }

    /// <summary>
    /// True when the last <see cref="MacLength"/> bytes of <paramref name="datagram"/> are the MAC of the rest under
    /// <paramref name="key"/>. Constant time in the MAC's content, so a forger learns nothing from the timing.
    /// </summary>
    public static bool VerifyMac(ReadOnlySpan<byte> datagram, ReadOnlySpan<byte> key)
    {
        if (datagram.Length <= MacLength)
        {
            return false;
        }

        int macOffset = datagram.Length - MacLength;
        Span<byte> expected = stackalloc byte[MacLength];
        ComputeMac(datagram[..macOffset], key, expected);
        return CryptographicOperations.FixedTimeEquals(expected, datagram[macOffset..]);
    }

    /// <summary>The name rule: 1 to <see cref="MaxNameLength"/> ASCII letters, digits, '-', '.' and '_'.</summary>
    public static bool IsValidName(ReadOnlySpan<byte> name)
    {
        if (name.IsEmpty || name.Length > MaxNameLength)
        {
            return false;
        }

        foreach (byte b in name)
        {
            if (!(char.IsAsciiLetterOrDigit((char)b) || b is (byte)'-' or (byte)'.' or (byte)'_'))
            {
                return false;
            }
        }

        return true;
    }

    /// <inheritdoc cref="IsValidName(ReadOnlySpan{byte})"/>
    public static bool IsValidName(string? name)
    {
        if (name is null || name.Length is 0 or > MaxNameLength)
        {
            return false;
        }

        Span<byte> bytes = stackalloc byte[MaxNameLength];
        for (int i = 0; i < name.Length; i++)
        {
            if (name[i] > 0x7F)
            {
                return false;
            }

            bytes[i] = (byte)name[i];
        }

        return IsValidName(bytes[..name.Length]);
    }

    private static bool IsValidVerdict(PeerMessageType type, PeerVerdict verdict) =>
        type == PeerMessageType.Query ? verdict == PeerVerdict.None : verdict is PeerVerdict.Owned or PeerVerdict.NotOwned;

    private static void ComputeMac(ReadOnlySpan<byte> covered, ReadOnlySpan<byte> key, Span<byte> mac)
    {
        Span<byte> full = stackalloc byte[HMACSHA256.HashSizeInBytes];
        HMACSHA256.HashData(key, covered, full);
        full[..MacLength].CopyTo(mac);
    }
}
