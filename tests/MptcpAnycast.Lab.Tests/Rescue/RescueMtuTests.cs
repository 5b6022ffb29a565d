using System.Diagnostics;
using System.Globalization;
using System.Net;
using MptcpAnycast.Lab.Tests.Infrastructure;
using MptcpAnycast.Lab.Tests.Lab;
using Xunit.Abstractions;

namespace MptcpAnycast.Lab.Tests.Rescue;

/// <summary>
/// The MSS budget: a tunnelled segment is the client's segment plus an outer header (20 bytes IPv4, 40 IPv6), and every
/// link in the lab has an MTU of 1500. The client's uplink has TSO and GSO off, so it sends segments of one MSS as a real
/// NIC puts them on the wire, and the router drops every fragment, so nothing can get through in pieces. A bulk upload
/// through a flip must complete with the budget (the SYN-ACK's MSS lowered to MTU-60 or MTU-100) and must not without
/// it: the full-size segments B tunnels are too big for B's uplink and die there, without an ICMP error anyone could
/// act on (the outer header has DF, the drop happens in the veth transmit, and the client's MSS is what the owner's
/// SYN-ACK said).
/// </summary>
[Collection(AnycastLabCollection.Name)]
public sealed class RescueMtuTests(ITestOutputHelper output)
{
    private const int Port = 8080;
    private const long Total = 4L * 1024 * 1024;
    private const int Rate = 1024 * 1024;
    private const string NoFragments = "rescue_test_nofrag";
    private static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(50);

    /// <summary>How long the upload may take after the flip: it has about 3.5 s of data left at 1 MiB/s.</summary>
    private static readonly TimeSpan InTime = TimeSpan.FromSeconds(15);

    [LabTheory]
    [InlineData(false, true)]
    [InlineData(true, true)]
    [InlineData(false, false)]
    [InlineData(true, false)]
    public async Task A_bulk_upload_of_full_size_segments_through_the_tunnel_completes_with_the_MSS_budget_and_not_without(bool ipv6, bool budget)
    {
        using var headroom = new ThreadPoolHeadroom(16);
        using LabTopology lab = LabTool.Up(new LabOptions());
        RescueLab.ClientSegmentationOff(lab);
        // Before conntrack's defragmentation (priority -400) could reassemble anything.
        RescueLab.AddRouterRules(lab, NoFragments, "prerouting", -500,
            "ip frag-off & 0x3fff != 0 counter drop",
            "meta nfproto ipv6 exthdr frag exists counter drop");
        Dictionary<string, object>? extra = budget ? null : new() { ["MssIPv4"] = 65495, ["MssIPv6"] = 65495 };
        using LabRescue rescue = await LabRescue.StartAsync(lab, LabTool.Command, extra: extra);
        IPAddress anycast = IPAddress.Parse(ipv6 ? lab.Plan.Anycast6 : lab.Plan.Anycast4);
        IPAddress any = ipv6 ? IPAddress.IPv6Any : IPAddress.Any;
        await using SinkServer a = SinkServer.Start(lab.Pop(LabPopId.A).Namespace, new IPEndPoint(any, Port));
        await using SinkServer b = SinkServer.Start(lab.Pop(LabPopId.B).Namespace, new IPEndPoint(any, Port));
        using PacedUpload client = await PacedUpload.StartAsync(lab.Client, new IPEndPoint(anycast, Port), Total, Rate, Tick);
        int mss = client.MaxSegment;
        SinkConnection upload = await a.WaitForConnectionAsync(1, TimeSpan.FromSeconds(5));
        await Eventually.TrueAsync(() => upload.Received >= 512 * 1024, "the upload reaches POP A");

        LabPop popB = lab.Pop(LabPopId.B);
        long dropsBefore = RescueLab.UplinkTxDropped(popB);
        long atFlip = upload.Received;
        long flip = Stopwatch.GetTimestamp();
        lab.FlipTo(LabPopId.B);
        bool completed = await Eventually.WaitAsync(() => upload.Completion.IsCompleted, InTime);
        double seconds = RescueLab.Milliseconds(flip, Stopwatch.GetTimestamp()) / 1000;
        long drops = RescueLab.UplinkTxDropped(popB) - dropsBefore;
        await Task.Delay(1100); // the agents' status is written every second
        long fragments = RescueLab.RouterRuleHits(lab, NoFragments);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{(ipv6 ? "IPv6" : "IPv4")}, MSS budget {(budget ? "on" : "off")}: client MSS {mss}; {atFlip / 1024} KiB at the flip; " +
            $"{(completed ? $"ended {seconds:0.0} s after the flip ({upload.Completion.Result ?? "EOF"})" : $"not ended {InTime.TotalSeconds:0} s after the flip")}, " +
            $"{upload.Received / 1024} of {Total / 1024} KiB at A, intact {upload.Intact}; " +
            $"B's uplink dropped {drops} packets on transmit; the router dropped {fragments} fragments"));
        output.WriteLine(RescueLab.DescribeCounters(lab, rescue.Counters));

        IReadOnlyDictionary<string, long> atB = rescue.Counters(LabPopId.B);
        Assert.True(atB.GetValueOrDefault("lookups.found") >= 1, "POP B never found the owner: the flip was not exercised");
        Assert.True(atB.GetValueOrDefault("program.tunnelled") > 0, "POP B tunnelled nothing");
        int mtu = 1500, budgetMss = ipv6 ? mtu - 100 : mtu - 60;
        if (budget)
        {
            Assert.True(mss <= budgetMss, $"the client's MSS is {mss}, above the budget {budgetMss}");
            Assert.True(completed, $"the upload did not complete within {InTime.TotalSeconds} s of the flip: {upload.Received} of {Total} bytes");
            Assert.Null(upload.Completion.Result);
            Assert.Equal(Total, upload.Received);
            Assert.True(upload.Intact, "the upload arrived corrupted");
            Assert.Null(client.Error);
        }
        else
        {
            // Without the budget the client's segments carry what A's SYN-ACK allowed: MTU-40 (IPv4) or MTU-60 (IPv6),
            // less 12 bytes of timestamps.
            Assert.True(mss > budgetMss, $"the client's MSS is {mss} although the budget was off");
            Assert.False(completed, $"the upload completed {seconds:0.0} s after the flip without the MSS budget");
            Assert.True(drops > 0, "B's uplink dropped nothing: the upload stalled for another reason");
            Assert.True(upload.Intact, "the upload arrived corrupted");
        }

        Assert.Empty(b.Connections);
    }
}
