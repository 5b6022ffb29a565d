using System.Buffers.Binary;
using System.Net;
using MptcpAnycast.Rescue;
using MptcpAnycast.Rescue.Agent;

namespace MptcpAnycast.Tests.Rescue.Agent;

public sealed class RawPacketSenderTests
{
    [Theory]
    [InlineData("203.0.113.7", "192.0.2.100")]
    [InlineData("2001:db8:1::7", "2001:db8:ac::1")]
    public void The_reset_for_an_acknowledging_segment_carries_its_acknowledgement_as_sequence(string client, string server)
    {
        var flow = new TcpFlow(IPAddress.Parse(client), 40000, IPAddress.Parse(server), 443);
        byte[] packet = RawPacketSender.BuildReset(new RescueMiss(flow, 5000, 0xfffffff0, RescueMiss.Ack, null));

        int ip = flow.IsIPv6 ? 40 : 20;
        ReadOnlySpan<byte> tcp = packet.AsSpan(ip);
        Assert.Equal(443, BinaryPrimitives.ReadUInt16BigEndian(tcp));
        Assert.Equal(40000, BinaryPrimitives.ReadUInt16BigEndian(tcp[2..]));
        Assert.Equal(0xfffffff0u, BinaryPrimitives.ReadUInt32BigEndian(tcp[4..]));
        Assert.Equal(RescueMiss.Rst, tcp[13]);
        Assert.Equal(TestPackets.TransportChecksum(flow.ServerAddress, flow.ClientAddress, 6, tcp), BinaryPrimitives.ReadUInt16BigEndian(tcp[16..]));
        if (flow.IsIPv6)
        {
            Assert.Equal(flow.ServerAddress, new IPAddress(packet.AsSpan(8, 16)));
            Assert.Equal(flow.ClientAddress, new IPAddress(packet.AsSpan(24, 16)));
        }
        else
        {
            Assert.True(TestPackets.Ipv4HeaderChecksumValid(packet.AsSpan(0, 20)));
            Assert.Equal(flow.ServerAddress, new IPAddress(packet.AsSpan(12, 4)));
            Assert.Equal(flow.ClientAddress, new IPAddress(packet.AsSpan(16, 4)));
        }
    }

    [Fact]
    public void The_reset_for_a_segment_without_ACK_acknowledges_what_it_carried()
    {
        var flow = new TcpFlow(IPAddress.Parse("203.0.113.7"), 40000, IPAddress.Parse("192.0.2.100"), 443);
        byte[] held = TestPackets.Tcp(flow.ClientAddress, 40000, flow.ServerAddress, 443, 0x08, seq: 7000, payload: 30)[TestPackets.EthernetLength..];
        byte[] packet = RawPacketSender.BuildReset(new RescueMiss(flow, 7000, 0, 0x08, held));
        Assert.Equal(7030u, BinaryPrimitives.ReadUInt32BigEndian(packet.AsSpan(28)));
        Assert.Equal(RescueMiss.Rst | RescueMiss.Ack, packet[33]);
    }

    [Theory]
    [InlineData("203.0.113.7", "192.0.2.100")]
    [InlineData("2001:db8:1::7", "2001:db8:ac::1")]
    public void A_held_segment_with_only_the_pseudo_header_sum_gets_its_full_checksum(string client, string server)
    {
        IPAddress c = IPAddress.Parse(client), s = IPAddress.Parse(server);
        byte[] packet = TestPackets.Tcp(c, 40000, s, 443, TestPackets.Ack, payload: 333)[TestPackets.EthernetLength..];
        int tcp = c.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? 40 : 20;
        ushort full = BinaryPrimitives.ReadUInt16BigEndian(packet.AsSpan(tcp + 16));
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(tcp + 16), 0x1234); // as CHECKSUM_PARTIAL leaves it

        RawPacketSender.CompleteTcpChecksum(packet);

        Assert.Equal(full, BinaryPrimitives.ReadUInt16BigEndian(packet.AsSpan(tcp + 16)));
    }
}
