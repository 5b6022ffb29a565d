using System.Buffers.Binary;
using MptcpAnycast.Interop;
using MptcpAnycast.Netlink;

namespace MptcpAnycast.Tests.PathManagement;

public sealed class NetlinkCodecTests
{
    [Fact]
    public void Writer_aligns_attributes_zeroes_padding_and_back_patches_message_and_nest_lengths()
    {
        byte[] buffer = new byte[128];
        buffer.AsSpan().Fill(0xEE);
        var w = new NetlinkWriter(buffer);
        w.BeginMessage(0x1c, NetlinkConstants.NLM_F_REQUEST, sequence: 7, portId: 9);
        w.WriteGenericHeader(3, 1);
        w.WriteU8(1, 0xAB);
        NestedScope nest = w.BeginNested(2);
        w.WriteU16(1, 0x1234);
        w.WriteString(2, "abc");
        w.EndNested(nest);
        w.EndMessage();

        byte[] expected =
        [
            48, 0, 0, 0, 0x1c, 0, 1, 0, 7, 0, 0, 0, 9, 0, 0, 0, // nlmsghdr
            3, 1, 0, 0,                                         // genlmsghdr
            5, 0, 1, 0, 0xAB, 0, 0, 0,                          // u8 + 3 bytes padding
            20, 0, 2, 0x80,                                     // nested, NLA_F_NESTED
            6, 0, 1, 0, 0x34, 0x12, 0, 0,                       // u16 + 2 padding
            8, 0, 2, 0, (byte)'a', (byte)'b', (byte)'c', 0,     // NUL-terminated string
        ];
        Assert.Equal(expected, w.Written.ToArray());
    }

    [Fact]
    public void Writer_refuses_to_overflow_its_buffer()
    {
        byte[] buffer = new byte[20];
        Assert.Throws<InvalidOperationException>(() =>
        {
            var w = new NetlinkWriter(buffer);
            w.BeginMessage(1, 0, 0);
            w.WriteU32(1, 1);
        });
    }

    [Fact]
    public void Reader_walks_several_messages_and_nested_attributes()
    {
        byte[] datagram = [.. Message(20, 2, 1, [1, 2, 3, 4]), .. Message(20, 0, 2, [])];
        var reader = new NetlinkMessageReader(datagram);

        Assert.True(reader.TryRead(out NetlinkMessage first));
        Assert.Equal(20, first.Type);
        Assert.Equal(NetlinkConstants.NLM_F_MULTI, first.Flags);
        Assert.Equal(1u, first.Sequence);
        Assert.Equal([1, 2, 3, 4], first.Payload.ToArray());
        Assert.True(reader.TryRead(out NetlinkMessage second));
        Assert.Equal(2u, second.Sequence);
        Assert.False(reader.TryRead(out _));
    }

    [Theory]
    [InlineData(new byte[] { 1, 2, 3 })]                                                // truncated header
    [InlineData(new byte[] { 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 })]         // nlmsg_len below the header
    [InlineData(new byte[] { 200, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 })]       // nlmsg_len past the datagram
    public void Reader_rejects_malformed_message_headers_with_the_typed_error(byte[] datagram)
    {
        Assert.Throws<NetlinkFormatException>(() =>
        {
            var reader = new NetlinkMessageReader(datagram);
            while (reader.TryRead(out _))
            {
            }
        });
    }

    [Theory]
    [InlineData(new byte[] { 2, 0, 1, 0 })]             // nla_len below its header
    [InlineData(new byte[] { 12, 0, 1, 0, 1, 2, 3, 4 })] // nla_len past the end
    public void Attribute_reader_rejects_bad_lengths(byte[] attributes)
    {
        Assert.Throws<NetlinkFormatException>(() =>
        {
            var reader = new NetlinkAttributeReader(attributes);
            while (reader.TryRead(out _))
            {
            }
        });
    }

    [Fact]
    public void Attribute_reader_skips_trailing_bytes_too_short_for_a_header_and_masks_type_flags()
    {
        byte[] attributes = [8, 0, 3, 0x80, 4, 0, 5, 0, 0xFF, 0xFF];
        var reader = new NetlinkAttributeReader(attributes);
        Assert.True(reader.TryRead(out NetlinkAttribute nested));
        Assert.Equal(3, nested.Type);
        Assert.True(nested.IsNested);
        NetlinkAttributeReader inner = nested.GetNested();
        Assert.True(inner.TryRead(out NetlinkAttribute empty));
        Assert.Equal(5, empty.Type);
        Assert.Equal(0, empty.Value.Length);
        Assert.False(reader.TryRead(out _));
    }

    [Fact]
    public void Attribute_shorter_than_its_type_needs_raises_the_typed_error()
    {
        byte[] attributes = [6, 0, 1, 0, 1, 2, 0, 0];
        var reader = new NetlinkAttributeReader(attributes);
        Assert.True(reader.TryRead(out NetlinkAttribute attribute));
        Assert.Equal(0x0201, attribute.GetU16());
        try
        {
            attribute.GetU32();
            Assert.Fail("GetU32 on two bytes must fail");
        }
        catch (NetlinkFormatException ex)
        {
            Assert.Contains("needs 4", ex.Message);
        }
    }

    [Fact]
    public void Error_with_extended_ack_yields_errno_text_and_offset_capped_or_not()
    {
        byte[] capped = ErrorPayload(-22, echoedLength: 16, echoPayload: false, "invalid token", offset: 24);
        NetlinkError e = NetlinkError.Parse(capped, NetlinkConstants.NLM_F_CAPPED | NetlinkConstants.NLM_F_ACK_TLVS);
        Assert.Equal(22, e.Errno);
        Assert.Equal("invalid token", e.Message);
        Assert.Equal(24u, e.Offset);

        byte[] full = ErrorPayload(-1, echoedLength: 26, echoPayload: true, "denied", offset: null);
        NetlinkError f = NetlinkError.Parse(full, NetlinkConstants.NLM_F_ACK_TLVS);
        Assert.Equal(1, f.Errno);
        Assert.Equal("denied", f.Message);
        Assert.Null(f.Offset);

        NetlinkError ack = NetlinkError.Parse(ErrorPayload(0, 16, false, null, null), NetlinkConstants.NLM_F_CAPPED);
        Assert.True(ack.IsAck);
        Assert.Null(ack.Message);
    }

    [Fact]
    public void Error_that_claims_to_echo_more_than_it_holds_raises_the_typed_error()
    {
        byte[] payload = ErrorPayload(-22, echoedLength: 400, echoPayload: false, null, null);
        Assert.Throws<NetlinkFormatException>(() => NetlinkError.Parse(payload, NetlinkConstants.NLM_F_ACK_TLVS));
        Assert.Throws<NetlinkFormatException>(() => NetlinkError.Parse([1, 2], 0));
    }

    [Fact]
    public void Done_carries_an_optional_negative_errno()
    {
        Assert.Equal(0, NetlinkError.ReadDoneErrno([]));
        Assert.Equal(0, NetlinkError.ReadDoneErrno([0, 0, 0, 0]));
        Assert.Equal(16, NetlinkError.ReadDoneErrno([0xF0, 0xFF, 0xFF, 0xFF]));
    }

    internal static byte[] Message(ushort type, ushort flags, uint sequence, byte[] payload)
    {
        byte[] message = new byte[NetlinkWriter.Align(16 + payload.Length)];
        BinaryPrimitives.WriteUInt32LittleEndian(message, (uint)(16 + payload.Length));
        BinaryPrimitives.WriteUInt16LittleEndian(message.AsSpan(4), type);
        BinaryPrimitives.WriteUInt16LittleEndian(message.AsSpan(6), flags);
        BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(8), sequence);
        payload.CopyTo(message, 16);
        return message;
    }

    internal static byte[] ErrorPayload(int error, uint echoedLength, bool echoPayload, string? text, uint? offset)
    {
        byte[] buffer = new byte[512];
        BinaryPrimitives.WriteInt32LittleEndian(buffer, error);
        BinaryPrimitives.WriteUInt32LittleEndian(buffer.AsSpan(4), echoedLength);
        int position = 4 + (echoPayload ? NetlinkWriter.Align((int)echoedLength) : 16);
        var w = new NetlinkWriter(buffer.AsSpan(position));
        if (text is not null)
        {
            w.WriteString(NetlinkConstants.NLMSGERR_ATTR_MSG, text);
        }

        if (offset is uint o)
        {
            w.WriteU32(NetlinkConstants.NLMSGERR_ATTR_OFFS, o);
        }

        return buffer[..(position + w.Length)];
    }
}
