using System.Buffers.Binary;
using System.Net;
using MptcpAnycast.Rescue;
using MptcpAnycast.Rescue.Agent;
using MptcpAnycast.Tests.Rescue.Bpf;

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
}
