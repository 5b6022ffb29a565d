using System.Globalization;
using System.Net;
using MptcpAnycast.Lab.Tests.Infrastructure;
using MptcpAnycast.Lab.Tests.Lab;
using Xunit.Abstractions;

namespace MptcpAnycast.Lab.Tests.Rescue;

/// <summary>
/// The tunnel follows the routing table to the owner. POPs B and A get a link of their own (a backbone) and B routes
/// A's unicast addresses over it, the IPv6 one without a gateway; A takes what arrives on that link into its uplink's
/// ingress (tc mirred), where its program decapsulates, as an agent watches one interface. With forwarding enabled on
/// B's uplink (the kernel answers the program's route lookup only then), B's tunnelled segments must leave by the
/// backbone and the upload must finish intact. Sending them out of the uplink they came in on instead goes through the
/// router (IPv4) or is lost (IPv6: the neighbour of an on-link route of another interface is sought on the uplink).
/// </summary>
[Collection(AnycastLabCollection.Name)]
public sealed class RescueBackboneTests(ITestOutputHelper output)
{
    private const int Port = 8080;
    private const long Total = 2L * 1024 * 1024;
    private const int Rate = 1024 * 1024;
    private static readonly TimeSpan InTime = TimeSpan.FromSeconds(15);

    [LabTheory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Tunnelled_segments_follow_the_route_to_the_owner_over_a_link_between_the_POPs(bool ipv6)
    {
        using var headroom = new ThreadPoolHeadroom(16);
        using LabTopology lab = LabTool.Up(new LabOptions());
        LabBackbone.Add(lab);
        LabPop b = lab.Pop(LabPopId.B);

        using LabRescue rescue = await LabRescue.StartAsync(lab, LabTool.Command);
        IPAddress anycast = IPAddress.Parse(ipv6 ? lab.Plan.Anycast6 : lab.Plan.Anycast4);
        IPAddress any = ipv6 ? IPAddress.IPv6Any : IPAddress.Any;
        await using SinkServer sink = SinkServer.Start(lab.Pop(LabPopId.A).Namespace, new IPEndPoint(any, Port));
        using PacedUpload client = await PacedUpload.StartAsync(lab.Client, new IPEndPoint(anycast, Port), Total, Rate, TimeSpan.FromMilliseconds(50));
        SinkConnection upload = await sink.WaitForConnectionAsync(1, TimeSpan.FromSeconds(5));
        await Eventually.TrueAsync(() => upload.Received >= 256 * 1024, "the upload reaches POP A");

        (long backboneBefore, long uplinkBefore) = (RescueLab.TxCounter(b, LabBackbone.Interface, "packets"), RescueLab.TxCounter(b, b.Interface, "packets"));
        lab.FlipTo(LabPopId.B);
        bool completed = await Eventually.WaitAsync(() => upload.Completion.IsCompleted, InTime);
        (long overBackbone, long overUplink) = (RescueLab.TxCounter(b, LabBackbone.Interface, "packets") - backboneBefore, RescueLab.TxCounter(b, b.Interface, "packets") - uplinkBefore);
        await Task.Delay(1100); // the agents' status is written every second
        IReadOnlyDictionary<string, long> atB = rescue.Counters(LabPopId.B);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{(ipv6 ? "IPv6" : "IPv4")}: {(completed ? "completed" : "not completed")}, {upload.Received / 1024} of {Total / 1024} KiB at A, intact {upload.Intact}; " +
            $"B sent {overBackbone} packets over the backbone and {overUplink} out of its uplink after the flip"));
        output.WriteLine(RescueLab.DescribeCounters(lab, rescue.Counters));

        long tunnelled = atB.GetValueOrDefault("program.tunnelled");
        Assert.True(tunnelled > 20, $"POP B tunnelled {tunnelled} segments: the flip was not exercised");
        Assert.Equal((0L, 0L), (atB.GetValueOrDefault("program.tunnel_by_uplink"), atB.GetValueOrDefault("program.tunnel_unrouted")));
        Assert.True(overBackbone >= tunnelled * 9 / 10, $"B tunnelled {tunnelled} segments but sent only {overBackbone} packets over the backbone ({overUplink} out of its uplink)");
        Assert.True(completed, $"the upload did not complete within {InTime.TotalSeconds} s of the flip: {upload.Received} of {Total} bytes");
        Assert.Null(upload.Completion.Result);
        Assert.Equal(Total, upload.Received);
        Assert.True(upload.Intact, "the upload arrived corrupted");
        Assert.True(rescue.Counters(LabPopId.A).GetValueOrDefault("program.decapsulated") >= tunnelled * 9 / 10, "A decapsulated less than B tunnelled");
    }

    /// <summary>
    /// Once B tunnels the flow over the backbone, its routes to A become blackholes (as a routing daemon installs when a
    /// peer's prefix is withdrawn): B must drop what it would tunnel, as the kernel drops a forwarded packet on such a
    /// route, and count it (<c>tunnel_unrouted</c>), so that the operator sees why the flow stalls; nothing reaches A.
    /// </summary>
    [LabTheory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_route_that_says_the_owner_cannot_be_reached_drops_what_would_be_tunnelled_and_counts_it(bool ipv6)
    {
        using var headroom = new ThreadPoolHeadroom(16);
        using LabTopology lab = LabTool.Up(new LabOptions());
        LabBackbone.Add(lab);
        LabPop a = lab.Pop(LabPopId.A), b = lab.Pop(LabPopId.B);

        using LabRescue rescue = await LabRescue.StartAsync(lab, LabTool.Command);
        IPAddress anycast = IPAddress.Parse(ipv6 ? lab.Plan.Anycast6 : lab.Plan.Anycast4);
        IPAddress any = ipv6 ? IPAddress.IPv6Any : IPAddress.Any;
        await using SinkServer sink = SinkServer.Start(a.Namespace, new IPEndPoint(any, Port));
        using PacedUpload client = await PacedUpload.StartAsync(lab.Client, new IPEndPoint(anycast, Port), Total, Rate, TimeSpan.FromMilliseconds(50));
        SinkConnection upload = await sink.WaitForConnectionAsync(1, TimeSpan.FromSeconds(5));
        await Eventually.TrueAsync(() => upload.Received >= 128 * 1024, "the upload reaches POP A");
        lab.FlipTo(LabPopId.B);
        long atFlip = upload.Received;
        await Eventually.TrueAsync(() => upload.Received >= atFlip + 128 * 1024, "the upload goes on through B's tunnel");

        if (ipv6)
        {
            b.Namespace.Ip("-6", "route", "replace", "blackhole", a.Address6 + "/128");
        }
        else
        {
            b.Namespace.Ip("route", "replace", "blackhole", a.Address4 + "/32");
        }

        await Task.Delay(1100); // the agents' status is written every second: one after the change
        long unroutedBefore = rescue.Counters(LabPopId.B).GetValueOrDefault("program.tunnel_unrouted");
        long receivedBefore = upload.Received;
        await Task.Delay(TimeSpan.FromSeconds(2));
        long receivedMeanwhile = upload.Received - receivedBefore;
        await Eventually.TrueAsync(() => rescue.Counters(LabPopId.B).GetValueOrDefault("program.tunnel_unrouted") > unroutedBefore,
            "POP B counts the segments it would tunnel over a blackhole route (program.tunnel_unrouted)");
        IReadOnlyDictionary<string, long> atB = rescue.Counters(LabPopId.B);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{(ipv6 ? "IPv6" : "IPv4")}: A received {receivedMeanwhile} bytes in the 2 s after the blackhole, {upload.Received / 1024} KiB in all"));
        output.WriteLine(RescueLab.DescribeCounters(lab, rescue.Counters));

        Assert.Equal(0L, receivedMeanwhile);
        Assert.Equal(0L, atB.GetValueOrDefault("program.tunnel_by_uplink"));
        Assert.True(atB.GetValueOrDefault("program.tunnelled") + atB.GetValueOrDefault("program.icmp_forwarded") >= atB.GetValueOrDefault("program.tunnel_unrouted"),
            "every unrouted packet is one B decided to tunnel");
    }
}
