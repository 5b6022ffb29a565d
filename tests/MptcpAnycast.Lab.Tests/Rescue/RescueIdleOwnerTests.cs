using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Lab.Tests.Infrastructure;
using MptcpAnycast.Lab.Tests.Lab;
using Xunit.Abstractions;

namespace MptcpAnycast.Lab.Tests.Rescue;

/// <summary>
/// A rescued flow that goes quiet for longer than <c>OwnerIdleTimeout</c> loses its owner entry, so that the owner map
/// empties once rescued flows are gone; when the client speaks again its segment is a miss, held while the owner is
/// looked up anew, and the connection goes on intact.
/// </summary>
[Collection(AnycastLabCollection.Name)]
public sealed class RescueIdleOwnerTests(ITestOutputHelper output)
{
    private const int Port = 8080, Chunk = 16 * 1024;

    [LabFact]
    public async Task A_rescued_flow_idle_beyond_the_timeout_loses_its_owner_entry_and_is_looked_up_again_when_it_speaks()
    {
        using var headroom = new ThreadPoolHeadroom(16);
        using LabTopology lab = LabTool.Up(new LabOptions());
        using LabRescue rescue = await LabRescue.StartAsync(lab, LabTool.Command,
            extra: new Dictionary<string, object> { ["OwnerIdleTimeout"] = "00:00:01" });
        IPEndPoint anycast = new(IPAddress.Parse(lab.Plan.Anycast4), Port);
        await using SinkServer a = SinkServer.Start(lab.Pop(LabPopId.A).Namespace, new IPEndPoint(IPAddress.Any, Port));
        using Socket client = lab.Client.Run(() => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
        client.NoDelay = true;
        await client.ConnectAsync(anycast).WithTimeout(TimeSpan.FromSeconds(5), "connect to the anycast address");

        await RescueLab.SendPatternAsync(client, 0, Chunk);
        SinkConnection atA = await a.WaitForConnectionAsync(1, TimeSpan.FromSeconds(5));
        await Eventually.TrueAsync(() => atA.Received >= Chunk, "the connection reaches A");
        lab.FlipTo(LabPopId.B);
        await RescueLab.SendPatternAsync(client, Chunk, Chunk);
        await Eventually.TrueAsync(() => atA.Received >= 2 * Chunk, "B tunnels the connection to A", TimeSpan.FromSeconds(5));
        await Eventually.TrueAsync(() => rescue.Counters(LabPopId.B).GetValueOrDefault("lookups.found") >= 1, "B found the owner");

        // The status file is written once a second and the entry may go idle within one: the first lookup's count can
        // be read as 1 or, after a retransmission past an expiry, already as 2; without expiry it would stay at 1.
        // Quiet: no segment from the client (A's delayed ACKs go to the client directly, not through B).
        await Eventually.TrueAsync(() => rescue.Counters(LabPopId.B).GetValueOrDefault("owners.expired") >= 1,
            "B's agent deletes the idle owner entry", TimeSpan.FromSeconds(10));

        await RescueLab.SendPatternAsync(client, 2 * Chunk, Chunk);
        await Eventually.TrueAsync(() => atA.Received >= 3 * Chunk, "the connection goes on after its entry expired", TimeSpan.FromSeconds(5));
        await Eventually.TrueAsync(() => rescue.Counters(LabPopId.B).GetValueOrDefault("lookups.found") >= 2, "B looked the owner up again");
        output.WriteLine(RescueLab.DescribeCounters(lab, rescue.Counters));
        Assert.True(atA.Intact, "the bytes arrived at A corrupted");
        Assert.False(atA.Completion.IsCompleted, $"the connection ended at A: {(atA.Completion.IsCompleted ? await atA.Completion : null)}");
        Assert.Equal(0, rescue.Counters(LabPopId.B).GetValueOrDefault("lookups.resets"));
    }
}
