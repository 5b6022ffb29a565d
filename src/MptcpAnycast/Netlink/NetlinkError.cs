using System.Buffers.Binary;
using MptcpAnycast.Interop;

namespace MptcpAnycast.Netlink;

/// <summary>
/// An <c>NLMSG_ERROR</c> message: <c>struct nlmsgerr { int error; struct nlmsghdr msg; }</c>, the request's payload
/// unless <c>NLM_F_CAPPED</c>, then extended-ack attributes when <c>NLM_F_ACK_TLVS</c>. Errno 0 is an ACK.
/// </summary>
internal readonly struct NetlinkError
{
    private const int ErrorFieldSize = 4;

    public NetlinkError(int errno, string? message, uint? offset)
    {
        Errno = errno;
        Message = message;
        Offset = offset;
    }

    /// <summary>The positive errno, 0 for an acknowledgement.</summary>
    public int Errno { get; }

    /// <summary>The kernel's extended-ack text (<c>NLMSGERR_ATTR_MSG</c>), or null.</summary>
    public string? Message { get; }

    /// <summary>The offset of the offending attribute in the request (<c>NLMSGERR_ATTR_OFFS</c>), or null.</summary>
    public uint? Offset { get; }

    public bool IsAck => Errno == 0;

    /// <summary>Reads the errno from an <c>NLMSG_DONE</c> payload (an <c>int</c>, 0 or negative; may be absent).</summary>
    public static int ReadDoneErrno(ReadOnlySpan<byte> payload) =>
        payload.Length >= ErrorFieldSize ? -BinaryPrimitives.ReadInt32LittleEndian(payload) : 0;

    public static NetlinkError Parse(ReadOnlySpan<byte> payload, ushort flags)
    {
        if (payload.Length < ErrorFieldSize)
        {
            throw new NetlinkFormatException($"NLMSG_ERROR of {payload.Length} bytes has no error code");
        }

        int error = BinaryPrimitives.ReadInt32LittleEndian(payload);
        int errno = error == int.MinValue ? int.MaxValue : -error;
        if ((flags & NetlinkConstants.NLM_F_ACK_TLVS) == 0 || payload.Length < ErrorFieldSize + NetlinkConstants.NLMSG_HDRLEN)
        {
            return new NetlinkError(errno, null, null);
        }

        // The echoed request: only its header when capped, else the whole (aligned) message.
        uint echoed = (flags & NetlinkConstants.NLM_F_CAPPED) != 0
            ? NetlinkConstants.NLMSG_HDRLEN
            : BinaryPrimitives.ReadUInt32LittleEndian(payload[ErrorFieldSize..]);
        long tlvStart = ErrorFieldSize + ((echoed + 3L) & ~3L);
        if (echoed < NetlinkConstants.NLMSG_HDRLEN || tlvStart > payload.Length)
        {
            throw new NetlinkFormatException($"NLMSG_ERROR echoes {echoed} bytes, more than its {payload.Length}-byte payload");
        }

        string? message = null;
        uint? offset = null;
        var attributes = new NetlinkAttributeReader(payload[(int)tlvStart..]);
        while (attributes.TryRead(out NetlinkAttribute attribute))
        {
            if (attribute.Type == NetlinkConstants.NLMSGERR_ATTR_MSG)
            {
                message = attribute.GetString();
            }
            else if (attribute.Type == NetlinkConstants.NLMSGERR_ATTR_OFFS)
            {
                offset = attribute.GetU32();
            }
        }

        return new NetlinkError(errno, string.IsNullOrEmpty(message) ? null : message, offset);
    }
}
