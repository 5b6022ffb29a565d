using System.Buffers.Binary;
using System.Net;
using MptcpAnycast.Interop;

namespace MptcpAnycast.Netlink;

/// <summary>Where a nested attribute starts; <see cref="NetlinkWriter.EndNested"/> writes its length there.</summary>
internal readonly struct NestedScope(int start)
{
    public int Start { get; } = start;
}

/// <summary>
/// Writes one netlink message into a caller's buffer: the <c>nlmsghdr</c>, an optional <c>genlmsghdr</c>, and
/// 4-byte aligned attributes (padding zeroed). The message and every nested attribute get their lengths
/// back-patched when they end. Allocates nothing.
/// </summary>
internal ref struct NetlinkWriter
{
    private readonly Span<byte> _buffer;
    private int _position;
    private int _messageStart;

    public NetlinkWriter(Span<byte> buffer)
    {
        _buffer = buffer;
        _position = 0;
        _messageStart = -1;
    }

    /// <summary>Bytes written so far (complete messages once <see cref="EndMessage"/> ran).</summary>
    public readonly int Length => _position;

    public readonly ReadOnlySpan<byte> Written => _buffer[.._position];

    public static int Align(int length) => (length + NetlinkConstants.NLMSG_ALIGNTO - 1) & ~(NetlinkConstants.NLMSG_ALIGNTO - 1);

    public void BeginMessage(ushort type, ushort flags, uint sequence, uint portId = 0)
    {
        if (_messageStart >= 0)
        {
            throw new InvalidOperationException("the previous netlink message was not ended");
        }

        _messageStart = _position;
        Span<byte> header = Reserve(NetlinkConstants.NLMSG_HDRLEN);
        BinaryPrimitives.WriteUInt32LittleEndian(header, 0);
        BinaryPrimitives.WriteUInt16LittleEndian(header[4..], type);
        BinaryPrimitives.WriteUInt16LittleEndian(header[6..], flags);
        BinaryPrimitives.WriteUInt32LittleEndian(header[8..], sequence);
        BinaryPrimitives.WriteUInt32LittleEndian(header[12..], portId);
    }

    public void WriteGenericHeader(byte command, byte version)
    {
        Span<byte> header = Reserve(NetlinkConstants.GENL_HDRLEN);
        header[0] = command;
        header[1] = version;
        header[2] = 0;
        header[3] = 0;
    }

    /// <summary>
    /// Reserves the fixed header a netlink protocol puts after the <c>nlmsghdr</c> (<c>struct inet_diag_req_v2</c> for
    /// sock_diag), zeroed and padded to 4 bytes, for the caller to fill in.
    /// </summary>
    public Span<byte> WriteFixedHeader(int size)
    {
        Span<byte> header = Reserve(Align(size));
        header.Clear();
        return header[..size];
    }

    /// <summary>Writes the message's length into its header.</summary>
    public void EndMessage()
    {
        if (_messageStart < 0)
        {
            throw new InvalidOperationException("no netlink message was begun");
        }

        BinaryPrimitives.WriteUInt32LittleEndian(_buffer[_messageStart..], (uint)(_position - _messageStart));
        _messageStart = -1;
    }

    public NestedScope BeginNested(ushort type)
    {
        int start = _position;
        WriteAttributeHeader(type | NetlinkConstants.NLA_F_NESTED, 0);
        return new NestedScope(start);
    }

    /// <summary>Back-patches the nested attribute's length: its header plus everything written inside it.</summary>
    public void EndNested(NestedScope scope)
    {
        int length = _position - scope.Start;
        if (scope.Start < 0 || length < NetlinkConstants.NLA_HDRLEN || length > ushort.MaxValue)
        {
            throw new InvalidOperationException($"nested attribute of {length} bytes cannot be ended");
        }

        BinaryPrimitives.WriteUInt16LittleEndian(_buffer[scope.Start..], (ushort)length);
    }

    public void WriteU8(ushort type, byte value) => Attribute(type, 1)[0] = value;

    public void WriteU16(ushort type, ushort value) => BinaryPrimitives.WriteUInt16LittleEndian(Attribute(type, 2), value);

    public void WriteU32(ushort type, uint value) => BinaryPrimitives.WriteUInt32LittleEndian(Attribute(type, 4), value);

    public void WriteI32(ushort type, int value) => BinaryPrimitives.WriteInt32LittleEndian(Attribute(type, 4), value);

    public void WriteBytes(ushort type, scoped ReadOnlySpan<byte> value) => value.CopyTo(Attribute(type, value.Length));

    /// <summary>Writes an ASCII string with its terminating NUL (<c>NLA_NUL_STRING</c>).</summary>
    public void WriteString(ushort type, string value)
    {
        Span<byte> target = Attribute(type, value.Length + 1);
        for (int i = 0; i < value.Length; i++)
        {
            char c = value[i];
            target[i] = c < 0x80 ? (byte)c : throw new ArgumentException("netlink names are ASCII", nameof(value));
        }

        target[value.Length] = 0;
    }

    /// <summary>
    /// Writes an IP address as a 4-byte (IPv4, or IPv4-mapped IPv6) or 16-byte attribute, network byte order.
    /// Returns the Linux address family (<c>AF_INET</c> or <c>AF_INET6</c>).
    /// </summary>
    public ushort WriteAddress(ushort ipv4Type, ushort ipv6Type, IPAddress address)
    {
        Span<byte> bytes = stackalloc byte[16];
        if (!address.TryWriteBytes(bytes, out int written))
        {
            throw new ArgumentException("the address does not fit 16 bytes", nameof(address));
        }

        if (written == 4)
        {
            WriteBytes(ipv4Type, bytes[..4]);
            return MptcpConstants.AF_INET;
        }

        if (IsIPv4Mapped(bytes))
        {
            WriteBytes(ipv4Type, bytes[12..16]);
            return MptcpConstants.AF_INET;
        }

        WriteBytes(ipv6Type, bytes);
        return MptcpConstants.AF_INET6;
    }

    /// <summary>The Linux family an address is written as (IPv4-mapped IPv6 counts as IPv4).</summary>
    public static ushort FamilyOf(IPAddress address)
    {
        Span<byte> bytes = stackalloc byte[16];
        return address.TryWriteBytes(bytes, out int written) && (written == 4 || IsIPv4Mapped(bytes))
            ? (ushort)MptcpConstants.AF_INET
            : (ushort)MptcpConstants.AF_INET6;
    }

    private static bool IsIPv4Mapped(ReadOnlySpan<byte> sixteen) =>
        sixteen[..10].IndexOfAnyExcept((byte)0) < 0 && sixteen[10] == 0xff && sixteen[11] == 0xff;

    private Span<byte> Attribute(int type, int valueLength)
    {
        int total = NetlinkConstants.NLA_HDRLEN + valueLength;
        if (total > ushort.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(valueLength), valueLength, "netlink attribute too long");
        }

        WriteAttributeHeader(type, total);
        Span<byte> value = Reserve(valueLength);
        int padding = Align(valueLength) - valueLength;
        Reserve(padding).Clear();
        return value;
    }

    private void WriteAttributeHeader(int type, int length)
    {
        Span<byte> header = Reserve(NetlinkConstants.NLA_HDRLEN);
        BinaryPrimitives.WriteUInt16LittleEndian(header, (ushort)length);
        BinaryPrimitives.WriteUInt16LittleEndian(header[2..], (ushort)type);
    }

    private Span<byte> Reserve(int count)
    {
        if (count > _buffer.Length - _position)
        {
            throw new InvalidOperationException($"netlink message does not fit its {_buffer.Length}-byte buffer");
        }

        Span<byte> span = _buffer.Slice(_position, count);
        _position += count;
        return span;
    }
}
