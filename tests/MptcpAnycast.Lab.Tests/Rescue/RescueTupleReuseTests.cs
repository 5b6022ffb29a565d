using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Lab.Tests.Infrastructure;
using MptcpAnycast.Lab.Tests.Lab;
using Xunit.Abstractions;

namespace MptcpAnycast.Lab.Tests.Rescue;

/// <summary>
/// A POP that tunnels a flow reads its owner map before its socket lookup (for flows the owner hint flags), so a new
/// connection on the same four-tuple must not find the old owner there: the client reuses its source port after a
/// rescued connection ended, and the new connection belongs to the POP it reaches.
/// </summary>
[Collection(AnycastLabCollection.Name)]
public sealed class RescueTupleReuseTests(ITestOutputHelper output)
{
    private const int Port = 8080, ClientPort = 45123, Chunk = 16 * 1024;

    [LabTheory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_new_connection_on_the_tuple_of_a_rescued_one_is_served_by_the_POP_it_reaches(bool ipv6)
    {
        using var headroom = new ThreadPoolHeadroom(16);
        using LabTopology lab = LabTool.Up(new LabOptions());
        using LabRescue rescue = await LabRescue.StartAsync(lab, LabTool.Command);
        IPEndPoint anycast = new(IPAddress.Parse(ipv6 ? lab.Plan.Anycast6 : lab.Plan.Anycast4), Port);
        IPAddress any = ipv6 ? IPAddress.IPv6Any : IPAddress.Any;
        await using SinkServer a = SinkServer.Start(lab.Pop(LabPopId.A).Namespace, new IPEndPoint(any, Port));
        await using SinkServer b = SinkServer.Start(lab.Pop(LabPopId.B).Namespace, new IPEndPoint(any, Port));

        // The first connection, to A, rescued through B after a flip, then reset by the client (no time-wait on
        // its side, so the tuple is free at once).
        using (Socket first = await ConnectFromAsync(lab, anycast, any))
        {
            await RescueLab.SendPatternAsync(first, 0, Chunk);
            SinkConnection atA = await a.WaitForConnectionAsync(1, TimeSpan.FromSeconds(5));
            await Eventually.TrueAsync(() => atA.Received >= Chunk, "the first connection reaches A");
            lab.FlipTo(LabPopId.B);
            await RescueLab.SendPatternAsync(first, Chunk, Chunk);
            await Eventually.TrueAsync(() => atA.Received >= 2 * Chunk, "B tunnels the first connection to A", TimeSpan.FromSeconds(5));
            // The counters come from the status file each agent writes every second.
            await Eventually.TrueAsync(() => rescue.Counters(LabPopId.B).GetValueOrDefault("program.tunnelled") > 0, "B's status shows tunnelled segments");
            first.LingerState = new LingerOption(true, 0);
        }

        await Eventually.TrueAsync(() => a.Connections.Single().Completion.IsCompleted, "the client's RST reaches A through B");

        // The same tuple again: the route still points at B, so the new connection is B's.
        using Socket second = await ConnectFromAsync(lab, anycast, any);
        const int Total = 256 * 1024;
        for (int sent = 0; sent < Total; sent += Chunk)
        {
            await RescueLab.SendPatternAsync(second, sent, Chunk);
        }

        SinkConnection atB = await b.WaitForConnectionAsync(1, TimeSpan.FromSeconds(5));
        await Eventually.TrueAsync(() => atB.Received >= Total, "the new connection's bytes reach B", TimeSpan.FromSeconds(10));
        await Eventually.TrueAsync(() => rescue.Counters(LabPopId.B).GetValueOrDefault("program.owner_forgotten") >= 1,
            "B's status shows that the new connection's SYN forgot the old owner");
        output.WriteLine(RescueLab.DescribeCounters(lab, rescue.Counters));
        Assert.Equal(ClientPort, ((IPEndPoint)atB.Socket.RemoteEndPoint!).Port);
        Assert.True(atB.Intact, "the new connection's bytes arrived at B corrupted");
        Assert.False(atB.Completion.IsCompleted, $"the new connection ended at B: {(atB.Completion.IsCompleted ? await atB.Completion : null)}");
        Assert.Single(a.Connections);
    }

    private static async Task<Socket> ConnectFromAsync(LabTopology lab, IPEndPoint anycast, IPAddress any)
    {
        Socket socket = lab.Client.Run(() => new Socket(anycast.AddressFamily, SocketType.Stream, ProtocolType.Tcp));
        try
        {
            socket.NoDelay = true;
            socket.Bind(new IPEndPoint(any, ClientPort));
            await socket.ConnectAsync(anycast).WithTimeout(TimeSpan.FromSeconds(5), "connect to the anycast address");
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}
