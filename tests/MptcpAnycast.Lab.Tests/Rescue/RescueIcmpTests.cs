using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Lab.Tests.Infrastructure;
using MptcpAnycast.Lab.Tests.Lab;
using Xunit.Abstractions;

namespace MptcpAnycast.Lab.Tests.Rescue;

/// <summary>
/// An ICMP error about a rescued flow (the owner's segment to the client could not be delivered, or was too big)
/// is addressed to the anycast address, so after a flip it reaches the POP that tunnels the flow, whose stack has no
/// socket for it. That POP must send it on to the owner, whose stack can act on it (lower the path MTU, report the
/// error). A router on the path sends the error here, as one between the POPs and the client would.
/// </summary>
[Collection(AnycastLabCollection.Name)]
public sealed class RescueIcmpTests(ITestOutputHelper output)
{
    private const int Port = 8080;
    private const int Rate = 64 * 1024;
    private static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(50);

    [LabTheory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task An_ICMP_error_about_a_tunnelled_flow_reaches_the_owner_through_the_tunnel(bool ipv6)
    {
        using var headroom = new ThreadPoolHeadroom(16);
        using LabTopology lab = LabTool.Up(new LabOptions());
        using LabRescue rescue = await LabRescue.StartAsync(lab, LabTool.Command);
        IPAddress anycast = IPAddress.Parse(ipv6 ? lab.Plan.Anycast6 : lab.Plan.Anycast4);
        LabNamespace a = lab.Pop(LabPopId.A).Namespace, b = lab.Pop(LabPopId.B).Namespace;
        await using SinkServer server = SinkServer.Start(a, new IPEndPoint(ipv6 ? IPAddress.IPv6Any : IPAddress.Any, Port));
        using PacedUpload upload = await PacedUpload.StartAsync(lab.Client, new IPEndPoint(anycast, Port), 1L << 40, Rate, Tick);
        SinkConnection flow = await server.WaitForConnectionAsync(1, TimeSpan.FromSeconds(5));
        await Eventually.TrueAsync(() => flow.Received >= 16 * 1024, "the flow reaches POP A");
        lab.FlipTo(LabPopId.B);
        long atFlip = flow.Received;
        await Eventually.TrueAsync(() => rescue.Counters(LabPopId.B).GetValueOrDefault("lookups.found") >= 1 && flow.Received >= atFlip + 16 * 1024,
            "POP B tunnels the flow to A");

        // The error quotes the owner's segment to the client: anycast:8080 -> client:port.
        var client = (IPEndPoint)flow.Socket.RemoteEndPoint!;
        IPAddress clientAddress = client.Address.IsIPv4MappedToIPv6 ? client.Address.MapToIPv4() : client.Address;
        byte[] quotedTcp = new byte[20];
        BinaryPrimitives.WriteUInt16BigEndian(quotedTcp, Port);
        BinaryPrimitives.WriteUInt16BigEndian(quotedTcp.AsSpan(2), (ushort)client.Port);
        byte[] quoted = TestPackets.IpPacket(anycast, clientAddress, 6, quotedTcp);
        IPAddress router = IPAddress.Parse(LabAddressPlan.Host(ipv6 ? lab.Plan.RouterClient6 : lab.Plan.RouterClient4));
        string received = ipv6 ? "Icmp6InPktTooBigs" : "IcmpInDestUnreachs";
        long atA = a.Counter(received), atB = b.Counter(received);
        long forwardedBefore = rescue.Counters(LabPopId.B).GetValueOrDefault("program.icmp_forwarded");

        const int Errors = 3;
        for (int i = 0; i < Errors; i++)
        {
            SendTooBig(lab.Router, router, anycast, quoted, ipv6);
        }

        await Eventually.TrueAsync(() => a.Counter(received) >= atA + Errors, $"POP A's stack receives the {Errors} errors (nstat {received})");
        // The agents' counters come from their status files, written once a second.
        long Forwarded() => rescue.Counters(LabPopId.B).GetValueOrDefault("program.icmp_forwarded") - forwardedBefore;
        await Eventually.TrueAsync(() => Forwarded() >= Errors, "B's program counts the errors it forwarded");
        long forwarded = Forwarded();
        output.WriteLine($"{(ipv6 ? "IPv6" : "IPv4")}: {Errors} errors sent to {anycast} from {router}; B forwarded {forwarded}; " +
            $"{received}: A +{a.Counter(received) - atA}, B +{b.Counter(received) - atB}");
        Assert.Equal(Errors, forwarded);
        Assert.Equal(atB, b.Counter(received));
        Assert.Null(upload.Error);
    }

    /// <summary>Sends "fragmentation needed, MTU 1400" (IPv4) or "packet too big, MTU 1280" (IPv6) from the router.</summary>
    private static void SendTooBig(LabNamespace from, IPAddress source, IPAddress destination, byte[] quoted, bool ipv6)
    {
        if (ipv6)
        {
            // An ICMPv6 raw socket: the kernel adds the IPv6 header and the checksum.
            byte[] icmp = new byte[8 + quoted.Length];
            icmp[0] = 2; // packet too big
            BinaryPrimitives.WriteUInt32BigEndian(icmp.AsSpan(4), 1280);
            quoted.CopyTo(icmp, 8);
            using Socket socket = from.Run(() => new Socket(AddressFamily.InterNetworkV6, SocketType.Raw, ProtocolType.IcmpV6));
            socket.SendTo(icmp, new IPEndPoint(destination, 0));
        }
        else
        {
            byte[] frame = TestPackets.IcmpError(source, destination, 3, 4, quoted); // destination unreachable, fragmentation needed
            byte[] packet = frame[TestPackets.EthernetLength..];
            // The next-hop MTU sits in the second half of the ICMP header's last word; the checksum covers it.
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(20 + 6), 1400);
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(20 + 2), 0);
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(20 + 2), TestPackets.Fold(TestPackets.Sum(packet.AsSpan(20))));
            using Socket socket = from.Run(() => new Socket(AddressFamily.InterNetwork, SocketType.Raw, ProtocolType.Raw));
            socket.SendTo(packet, new IPEndPoint(destination, 0));
        }
    }
}
