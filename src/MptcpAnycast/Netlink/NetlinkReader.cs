using System.Buffers.Binary;
using System.Net;
using MptcpAnycast.Interop;

namespace MptcpAnycast.Netlink;

/// <summary>One netlink message inside a received datagram.</summary>
internal readonly ref struct NetlinkMessage
{
    public NetlinkMessage(ushort type, ushort flags, uint sequence, uint portId, ReadOnlySpan<byte> payload)
    {
        Type = type;
        Flags = flags;
        Sequence = sequence;
        PortId = portId;
        Payload = payload;
    }

    public ushort Type { get; }

    public ushort Flags { get; }

    public uint Sequence { get; }

    public uint PortId { get; }

    /// <summary>Everything after the 16-byte header, up to <c>nlmsg_len</c>.</summary>
    public ReadOnlySpan<byte> Payload { get; }

    /// <summary>Splits a generic-netlink payload into its command, version and attributes.</summary>
    public GenericMessage ReadGeneric()
    {
        if (Payload.Length < NetlinkConstants.GENL_HDRLEN)
        {
            throw new NetlinkFormatException($"generic netlink message of {Payload.Length} bytes has no genlmsghdr");
        }

        return new GenericMessage(Payload[0], Payload[1], Payload[NetlinkConstants.GENL_HDRLEN..]);
    }
}

/// <summary>A generic-netlink message body: <c>genlmsghdr</c> and attributes.</summary>
internal readonly ref struct GenericMessage(byte command, byte version, ReadOnlySpan<byte> attributes)
{
    public byte Command { get; } = command;

    public byte Version { get; } = version;

    public ReadOnlySpan<byte> Attributes { get; } = attributes;
}

/// <summary>
/// Walks the messages of a netlink datagram. A header that is truncated, shorter than itself or longer than the
/// datagram raises <see cref="NetlinkFormatException"/>; every step consumes at least 16 bytes, so it ends.
/// </summary>
internal ref struct NetlinkMessageReader(ReadOnlySpan<byte> datagram)
{
    private ReadOnlySpan<byte> _remaining = datagram;

    public bool TryRead(out NetlinkMessage message)
    {
        if (_remaining.IsEmpty)
        {
            message = default;
            return false;
        }

        if (_remaining.Length < NetlinkConstants.NLMSG_HDRLEN)
        {
            throw new NetlinkFormatException($"truncated netlink header: {_remaining.Length} bytes left");
        }

        uint length = BinaryPrimitives.ReadUInt32LittleEndian(_remaining);
        if (length < NetlinkConstants.NLMSG_HDRLEN || length > (uint)_remaining.Length)
        {
            throw new NetlinkFormatException($"netlink message length {length} outside 16..{_remaining.Length}");
        }

        message = new NetlinkMessage(
            BinaryPrimitives.ReadUInt16LittleEndian(_remaining[4..]),
            BinaryPrimitives.ReadUInt16LittleEndian(_remaining[6..]),
            BinaryPrimitives.ReadUInt32LittleEndian(_remaining[8..]),
            BinaryPrimitives.ReadUInt32LittleEndian(_remaining[12..]),
            _remaining[NetlinkConstants.NLMSG_HDRLEN..(int)length]);
        int advance = Math.Min(NetlinkWriter.Align((int)length), _remaining.Length);
        _remaining = _remaining[advance..];
        return true;
    }
}

/// <summary>One attribute: its type (flags masked off), whether it is marked nested, and its value.</summary>
internal readonly ref struct NetlinkAttribute
{
    public NetlinkAttribute(ushort rawType, ReadOnlySpan<byte> value)
    {
        Type = (ushort)(rawType & NetlinkConstants.NLA_TYPE_MASK);
        IsNested = (rawType & NetlinkConstants.NLA_F_NESTED) != 0;
        Value = value;
    }

    public ushort Type { get; }

    public bool IsNested { get; }

    public ReadOnlySpan<byte> Value { get; }

    public byte GetU8() => Need(1)[0];

    public ushort GetU16() => BinaryPrimitives.ReadUInt16LittleEndian(Need(2));

    public ushort GetU16BigEndian() => BinaryPrimitives.ReadUInt16BigEndian(Need(2));

    public uint GetU32() => BinaryPrimitives.ReadUInt32LittleEndian(Need(4));

    public int GetI32() => BinaryPrimitives.ReadInt32LittleEndian(Need(4));

    /// <summary>An unsigned integer of 1, 2 or 4 bytes in host order (kernels widened some event attributes).</summary>
    public uint GetUnsigned() => Value.Length switch
    {
        0 => throw new NetlinkFormatException($"attribute {Type} is empty, needs an integer"),
        1 => Value[0],
        2 or 3 => BinaryPrimitives.ReadUInt16LittleEndian(Value),
        _ => BinaryPrimitives.ReadUInt32LittleEndian(Value),
    };

    public IPAddress GetIPv4() => new(Need(4)[..4]);

    public IPAddress GetIPv6() => new(Need(16)[..16]);

    /// <summary>A NUL-terminated (or unterminated) string; allocates the string.</summary>
    public string GetString()
    {
        int end = Value.IndexOf((byte)0);
        ReadOnlySpan<byte> text = end < 0 ? Value : Value[..end];
        return System.Text.Encoding.UTF8.GetString(text);
    }

    /// <summary>True when the value is exactly <paramref name="ascii"/> (NUL-terminated or not); allocates nothing.</summary>
    public bool ValueEquals(string ascii)
    {
        int end = Value.IndexOf((byte)0);
        ReadOnlySpan<byte> text = end < 0 ? Value : Value[..end];
        if (text.Length != ascii.Length)
        {
            return false;
        }

        for (int i = 0; i < text.Length; i++)
        {
            if (text[i] != ascii[i])
            {
                return false;
            }
        }

        return true;
    }

    public NetlinkAttributeReader GetNested() => new(Value);

    private ReadOnlySpan<byte> Need(int size) => Value.Length >= size
        ? Value
        : throw new NetlinkFormatException($"attribute {Type} has {Value.Length} bytes, needs {size}");
}

/// <summary>
/// Walks a run of attributes the way the kernel's <c>nla_for_each_attr</c> does: fewer than 4 trailing bytes are
/// padding and end the walk; an attribute whose length is under 4 or past the end raises
/// <see cref="NetlinkFormatException"/>. Each step consumes at least 4 bytes, so it ends.
/// </summary>
internal ref struct NetlinkAttributeReader(ReadOnlySpan<byte> attributes)
{
    private ReadOnlySpan<byte> _remaining = attributes;

    public bool TryRead(out NetlinkAttribute attribute)
    {
        if (_remaining.Length < NetlinkConstants.NLA_HDRLEN)
        {
            _remaining = default;
            attribute = default;
            return false;
        }

        ushort length = BinaryPrimitives.ReadUInt16LittleEndian(_remaining);
        if (length < NetlinkConstants.NLA_HDRLEN || length > _remaining.Length)
        {
            throw new NetlinkFormatException($"attribute length {length} outside 4..{_remaining.Length}");
        }

        attribute = new NetlinkAttribute(BinaryPrimitives.ReadUInt16LittleEndian(_remaining[2..]), _remaining[NetlinkConstants.NLA_HDRLEN..length]);
        int advance = Math.Min(NetlinkWriter.Align(length), _remaining.Length);
        _remaining = _remaining[advance..];
        return true;
    }
}
