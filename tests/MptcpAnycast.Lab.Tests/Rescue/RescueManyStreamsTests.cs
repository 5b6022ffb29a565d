using System.Globalization;
using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Lab.Tests.Infrastructure;
using MptcpAnycast.Lab.Tests.Lab;
using Xunit.Abstractions;

namespace MptcpAnycast.Lab.Tests.Rescue;

/// <summary>
/// Rescue at some scale: 200 plain TCP streams from POP A at once over flips A-B-A-B, each one looked up by B at the
/// first flip and tunnelled by it twice; and B keeps serving its own new connections meanwhile, which A then rescues
/// for B when the route comes back.
/// </summary>
[Collection(AnycastLabCollection.Name)]
public sealed class RescueManyStreamsTests(ITestOutputHelper output)
{
    private const int Port = 8080;
    private const int Streams = 200;

    // 384 KiB at 32 KiB/s: 12 s per stream, 6.4 MiB/s in all, written in 50 ms ticks.
    private static readonly PacedStreamSpec Spec = new(384 * 1024, 32 * 1024);
    private static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(50);
    private static readonly LabPopId[] Flips = [LabPopId.B, LabPopId.A, LabPopId.B];

    [LabFact]
    public async Task Two_hundred_plain_TCP_streams_survive_flips_A_B_A_B_intact_while_B_serves_its_own_new_connection()
    {
        using var headroom = new ThreadPoolHeadroom(32);
        using LabTopology lab = LabTool.Up(new LabOptions());
        using LabRescue rescue = await LabRescue.StartAsync(lab, LabTool.Command);
        IPEndPoint anycast = new(IPAddress.Parse(lab.Plan.Anycast4), Port);
        await using PacedStreamServer a = PacedStreamServer.Start(lab.Pop(LabPopId.A).Namespace, new IPEndPoint(IPAddress.Any, Port), Spec, Tick);
        await using PacedStreamServer b = PacedStreamServer.Start(lab.Pop(LabPopId.B).Namespace, new IPEndPoint(IPAddress.Any, Port), Spec, Tick);
        List<Socket> clients = lab.Client.Run(() =>
            Enumerable.Range(0, Streams + 1).Select(_ => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp)).ToList());
        try
        {
            CancellationToken within = TaskTimeoutExtensions.Within(TimeSpan.FromSeconds(90));
            foreach (Socket[] batch in clients.Take(Streams).Chunk(50))
            {
                await Task.WhenAll(batch.Select(c => c.ConnectAsync(anycast, within).AsTask()))
                    .WithTimeout(TimeSpan.FromSeconds(15), "connect 50 clients to the anycast address");
            }

            List<StreamReceiver> receivers = [.. clients.Take(Streams).Select(c => StreamReceiver.Start(c, Spec, within))];
            await Eventually.TrueAsync(() => receivers.All(r => r.Received >= 16 * 1024), "every stream started");
            Assert.Equal(Streams, a.Connections.Count);

            StreamReceiver? own = null;
            var flipsDone = new List<string>();
            foreach (LabPopId to in Flips)
            {
                await Task.Delay(1500);
                int ended = receivers.Count(r => r.Completion.IsCompleted);
                Assert.True(ended == 0, $"{ended} streams ended before the flip to {to}");
                lab.FlipTo(to);
                flipsDone.Add($"{to}@{receivers.Min(r => r.Received) / 1024}-{receivers.Max(r => r.Received) / 1024}KiB");
                if (own is null && to == LabPopId.B)
                {
                    // A new connection while B tunnels A's 200 flows: B's own server answers it.
                    Socket client = clients[Streams];
                    await client.ConnectAsync(anycast, within).AsTask().WithTimeout(TimeSpan.FromSeconds(5), "connect to B after the flip");
                    own = StreamReceiver.Start(client, Spec, within);
                    Assert.True(await own.WaitForAsync(16 * 1024, TimeSpan.FromSeconds(5)), $"B's own new connection got no data: {(own.Completion.IsCompleted ? await own.Completion : null)}");
                }
            }

            StreamOutcome[] outcomes = await Task.WhenAll(receivers.Select(r => r.Completion)).WithTimeout(TimeSpan.FromSeconds(40), "every stream ends");
            StreamOutcome ownOutcome = await own!.Completion.WithTimeout(TimeSpan.FromSeconds(20), "B's own stream ends");
            await Task.Delay(1100); // the agents' status is written every second

            double[] gaps = [.. outcomes.Select(o => o.LongestGapMs).Order()];
            int complete = outcomes.Count(o => o.Complete);
            output.WriteLine($"flips {string.Join(" ", flipsDone)}");
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{complete}/{Streams} streams complete and intact; longest gap per stream: median {gaps[gaps.Length / 2]:0} ms, " +
                $"p90 {gaps[gaps.Length * 9 / 10]:0} ms, max {gaps[^1]:0} ms"));
            output.WriteLine($"B's own connection (made after the flip to B, then rescued by A): {ownOutcome}");
            output.WriteLine(RescueLab.DescribeCounters(lab, rescue.Counters));
            foreach (StreamOutcome failed in outcomes.Where(o => !o.Complete).Take(5))
            {
                output.WriteLine($"failed: {failed}");
            }

            Assert.Equal(Streams, complete);
            // Generous: the streams' own noise in this process is 150-320 ms with or without flips; a lost segment
            // that waits for retransmission timeouts, or a lookup that stalls, would show as seconds.
            Assert.True(gaps[^1] < 2000, $"a stream stalled for {gaps[^1]:0} ms");
            Assert.True(ownOutcome.Complete, $"B's own new connection did not complete: {ownOutcome}");
            Assert.Equal(Streams, a.Connections.Count);
            Assert.Single(b.Connections);
            IReadOnlyDictionary<string, long> atA = rescue.Counters(LabPopId.A), atB = rescue.Counters(LabPopId.B);
            Assert.True(atB.GetValueOrDefault("lookups.found") >= Streams, $"POP B found {atB.GetValueOrDefault("lookups.found")} owners, fewer than {Streams} flows");
            Assert.Equal(0, atB.GetValueOrDefault("lookups.resets"));
            Assert.Equal(0, atA.GetValueOrDefault("lookups.resets"));
            Assert.True(atA.GetValueOrDefault("lookups.found") >= 1, "POP A never looked up B's own connection when the route came back");
        }
        finally
        {
            clients.ForEach(c => c.Dispose());
        }
    }
}
