using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Lab.Tests.Infrastructure;
using MptcpAnycast.Lab.Tests.Lab;
using Xunit.Abstractions;

namespace MptcpAnycast.Lab.Tests.Rescue;

/// <summary>
/// A spoofed-ACK flood at the POP the route points at: segments of connections that exist nowhere, random 4-tuples,
/// from the client's subnet. The POP must stay bounded (lookups and RSTs under their rates, no state per packet),
/// and a rescued connection and the POP's own connection must keep going.
/// </summary>
[Collection(AnycastLabCollection.Name)]
public sealed class RescueFloodTests(ITestOutputHelper output)
{
    private const int Port = 8080;
    private const int FloodPackets = 120_000;
    private const int MaxRate = 100_000; // packets per second; the test asserts at least 50,000 were reached

    // 2 MiB at 128 KiB/s: 16 s, long enough to span the flood.
    private static readonly PacedStreamSpec Spec = new(2 * 1024 * 1024, 128 * 1024);

    [LabFact]
    public async Task A_spoofed_ACK_flood_at_B_stays_bounded_and_B_s_rescued_and_own_flows_carry_on()
    {
        using LabTopology lab = LabTool.Up(new LabOptions());
        using LabRescue rescue = await LabRescue.StartAsync(lab, LabTool.Command);
        await using PacedStreamServer serverA = PacedStreamServer.Start(lab.Pop(LabPopId.A).Namespace, new IPEndPoint(IPAddress.Any, Port), Spec);
        await using PacedStreamServer serverB = PacedStreamServer.Start(lab.Pop(LabPopId.B).Namespace, new IPEndPoint(IPAddress.Any, Port), Spec);
        IPAddress anycast = IPAddress.Parse(lab.Plan.Anycast4);
        using CancellationTokenSource bound = new(TimeSpan.FromSeconds(60));

        // A connection owned by A, rescued by B after the flip; then one of B's own.
        using Socket rescued = lab.Client.Run(() => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
        await rescued.ConnectAsync(new IPEndPoint(anycast, Port)).WithTimeout(TimeSpan.FromSeconds(5), "connect (A)");
        StreamReceiver rescuedStream = StreamReceiver.Start(rescued, Spec, bound.Token);
        Assert.True(await rescuedStream.WaitForAsync(32 * 1024, TimeSpan.FromSeconds(5)), "the stream from A did not start");
        lab.FlipTo(LabPopId.B);
        await Task.Delay(500);
        using Socket own = lab.Client.Run(() => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
        await own.ConnectAsync(new IPEndPoint(anycast, Port)).WithTimeout(TimeSpan.FromSeconds(5), "connect (B)");
        StreamReceiver ownStream = StreamReceiver.Start(own, Spec, bound.Token);
        Assert.True(await ownStream.WaitForAsync(32 * 1024, TimeSpan.FromSeconds(5)), "the stream from B did not start");
        await Task.Delay(1200); // status files are written once a second
        IReadOnlyDictionary<string, long> before = rescue.Counters(LabPopId.B);
        long rstBeforeA = OutRsts(lab.Pop(LabPopId.A));

        (int sent, TimeSpan took) = await Task.Run(() => lab.Client.Run(() => Flood(lab, anycast)));
        double rate = sent / took.TotalSeconds;
        await Task.Delay(2500);
        IReadOnlyDictionary<string, long> after = rescue.Counters(LabPopId.B);
        long Delta(string name) => after.GetValueOrDefault(name) - before.GetValueOrDefault(name);

        StreamOutcome rescuedOutcome = await rescuedStream.Completion.WaitAsync(TimeSpan.FromSeconds(40));
        StreamOutcome ownOutcome = await ownStream.Completion.WaitAsync(TimeSpan.FromSeconds(40));
        long rstA = OutRsts(lab.Pop(LabPopId.A)) - rstBeforeA;
        double seconds = took.TotalSeconds + 2.5;
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"flood: {sent} spoofed ACKs in {took.TotalMilliseconds:0} ms = {rate:0} packets/s at B"));
        output.WriteLine($"B: program.miss +{Delta("program.miss")}, miss_unreported +{Delta("program.miss_unreported")}, reports +{Delta("lookups.misses")}, " +
            $"lookups +{Delta("lookups.lookups")}, rate-limited +{Delta("lookups.lookup_rate_limited")}, pending-full +{Delta("lookups.pending_full")}, " +
            $"coalesced +{Delta("lookups.coalesced")}, resets +{Delta("lookups.resets")}, resets rate-limited +{Delta("lookups.resets_rate_limited")}, " +
            $"queries sent +{Delta("peers.queries_sent")}, outbound rate-limited +{Delta("peers.outbound_rate_limited")}");
        output.WriteLine($"A: TCP resets sent during the flood {rstA}; A's rescue counters: {string.Join(", ", rescue.Counters(LabPopId.A).Where(c => c.Value != 0 && c.Key.StartsWith("peers.", StringComparison.Ordinal)).Select(c => $"{c.Key}={c.Value}"))}");
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"rescued flow: {rescuedOutcome}"));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"B's own flow: {ownOutcome}"));

        Assert.True(sent >= 100_000, $"only {sent} packets sent");
        Assert.True(rate >= 50_000, $"the flood reached only {rate:0} packets/s");
        Assert.True(Delta("program.miss") >= sent * 9 / 10, $"B's program saw {Delta("program.miss")} of {sent} spoofed segments as misses");
        // Lookups and RSTs stay under their rates (2,000/s and 1,000/s, each with one second of burst).
        Assert.InRange(Delta("lookups.lookups"), 1, (long)(2000 * (seconds + 1)));
        Assert.InRange(Delta("lookups.resets"), 0, (long)(1000 * (seconds + 1)));
        Assert.True(Delta("lookups.resets") <= sent, "more RSTs than spoofed segments");
        Assert.True(rstA <= Delta("peers.queries_sent"), "A reset more than it was asked about");
        Assert.True(rescuedOutcome.Complete, $"the rescued flow did not survive the flood: {rescuedOutcome}");
        Assert.True(ownOutcome.Complete, $"B's own flow did not survive the flood: {ownOutcome}");
    }

    /// <summary>Sends the spoofed ACKs from the client's namespace (this thread is in it): random client addresses in the client's /26 and random ports.</summary>
    private static (int Sent, TimeSpan Took) Flood(LabTopology lab, IPAddress anycast)
    {
        var random = new Random(20261201);
        byte[] subnet = IPAddress.Parse(LabAddressPlan.Host(lab.Plan.Client4)).GetAddressBytes();
        byte[][] packets = new byte[FloodPackets][];
        for (int i = 0; i < packets.Length; i++)
        {
            byte[] source = (byte[])subnet.Clone();
            source[3] = (byte)random.Next(10, 60); // within the client's /26, not the client's own address (.2)
            packets[i] = SpoofedAck(new IPAddress(source), random.Next(1024, 65536), anycast, Port, (uint)random.Next(), (uint)random.Next());
        }

        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Raw, ProtocolType.Tcp);
        socket.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.HeaderIncluded, true);
        var target = new IPEndPoint(anycast, 0);
        var clock = Stopwatch.StartNew();
        int sent = 0;
        foreach (byte[] packet in packets)
        {
            // Paced to at most MaxRate, and bounded in time.
            while (sent > clock.Elapsed.TotalSeconds * MaxRate)
            {
                Thread.SpinWait(50);
            }

            if (clock.Elapsed > TimeSpan.FromSeconds(10))
            {
                break;
            }

            socket.SendTo(packet, target);
            sent++;
        }

        return (sent, clock.Elapsed);
    }

    // A bare ACK (no payload) as an IP packet: the Ethernet header of the test frame is left off for the raw socket.
    private static byte[] SpoofedAck(IPAddress source, int sourcePort, IPAddress destination, int destinationPort, uint seq, uint ack) =>
        TestPackets.Tcp(source, sourcePort, destination, destinationPort, TestPackets.Ack, seq, ack, payload: 0)[TestPackets.EthernetLength..];

    private static long OutRsts(LabPop pop)
    {
        string line = pop.Namespace.TryExec("nstat", "-az", "TcpOutRsts").Output.Split('\n')
            .FirstOrDefault(l => l.StartsWith("TcpOutRsts", StringComparison.Ordinal)) ?? "TcpOutRsts 0";
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
    }
}
