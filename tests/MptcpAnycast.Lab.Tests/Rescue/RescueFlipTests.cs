using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Lab.Tests.Infrastructure;
using MptcpAnycast.Lab.Tests.Lab;
using Xunit.Abstractions;

namespace MptcpAnycast.Lab.Tests.Rescue;

/// <summary>
/// Rescue in a three-POP lab with the agent (<c>mptcp-anycast rescue run</c>) in every POP: plain TCP clients, whose
/// connections have no second subflow, keep streaming across real route flips because the POP the route points at
/// tunnels their segments to the POP that owns the connection.
/// </summary>
[Collection(AnycastLabCollection.Name)]
public sealed class RescueFlipTests(ITestOutputHelper output)
{
    private const int Port = 8080;

    // 2 MiB at 256 KiB/s: 8 s, long enough for five flips 1.2 s apart.
    private static readonly PacedStreamSpec Spec = new(2 * 1024 * 1024, 256 * 1024);
    private static readonly LabPopId[] Flips = [LabPopId.B, LabPopId.A, LabPopId.B, LabPopId.A, LabPopId.C];

    [LabTheory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public async Task A_plain_TCP_stream_survives_flips_A_B_A_B_A_C_with_every_byte_intact(bool ipv6, bool listenOnAnycast)
    {
        // The flips run ip on a pool thread; with the default minimum the receiver's reads wait for a new one (a stall
        // of the test, not of the connection).
        using var headroom = new ThreadPoolHeadroom(16);
        using LabTopology lab = LabTool.Up(new LabOptions { Pops = 3 });
        using LabRescue rescue = await LabRescue.StartAsync(lab, LabTool.Command);
        IPAddress anycast = IPAddress.Parse(ipv6 ? lab.Plan.Anycast6 : lab.Plan.Anycast4);
        IPAddress listen = listenOnAnycast ? anycast : ipv6 ? IPAddress.IPv6Any : IPAddress.Any;
        var servers = lab.Pops.Select(p => PacedStreamServer.Start(p.Namespace, new IPEndPoint(listen, Port), Spec)).ToList();
        try
        {
            using Socket client = lab.Client.Run(() => new Socket(anycast.AddressFamily, SocketType.Stream, ProtocolType.Tcp));
            await client.ConnectAsync(new IPEndPoint(anycast, Port)).WithTimeout(TimeSpan.FromSeconds(5), "connect to the anycast address");
            StreamReceiver receiver = StreamReceiver.Start(client, Spec, TaskTimeoutExtensions.Within(TimeSpan.FromSeconds(40)));
            Assert.True(await receiver.WaitForAsync(64 * 1024, TimeSpan.FromSeconds(5)), "the stream did not start");

            var flipsDone = new List<string>();
            foreach (LabPopId to in Flips)
            {
                await Task.Delay(1200);
                Assert.False(receiver.Completion.IsCompleted, $"the stream ended before the flip to {to}: {(receiver.Completion.IsCompleted ? await receiver.Completion : null)}");
                lab.FlipTo(to);
                flipsDone.Add($"{to}@{receiver.Received / 1024}KiB");
            }

            StreamOutcome outcome = await receiver.Completion.WaitAsync(TimeSpan.FromSeconds(20));
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{(ipv6 ? "IPv6" : "IPv4")}, listener on {listen}: flips {string.Join(" ", flipsDone)}; {outcome}"));
            foreach (LabPopId pop in (LabPopId[])[LabPopId.A, LabPopId.B, LabPopId.C])
            {
                output.WriteLine($"POP {pop}: {string.Join(", ", rescue.Counters(pop).Where(c => c.Value != 0).Select(c => $"{c.Key}={c.Value}"))}");
            }

            Assert.True(outcome.Complete, $"the plain TCP stream did not survive: {outcome}");
            Assert.Single(servers[0].Connections);
            Assert.Empty(servers[1].Connections);
            Assert.Empty(servers[2].Connections);

            // The segments went the way the design says: B and C tunnelled them, A took them out of the tunnel.
            await Eventually.TrueAsync(() => rescue.Counters(LabPopId.C).GetValueOrDefault("program.tunnelled") > 0, "POP C's status shows tunnelled segments");
            IReadOnlyDictionary<string, long> atB = rescue.Counters(LabPopId.B);
            Assert.True(atB.GetValueOrDefault("program.tunnelled") > 0, "POP B tunnelled nothing");
            // The lab's POPs do not forward, so the route lookup is not answered: every segment by the uplink.
            Assert.Equal(atB.GetValueOrDefault("program.tunnelled") + atB.GetValueOrDefault("program.icmp_forwarded"), atB.GetValueOrDefault("program.tunnel_by_uplink"));
            Assert.True(rescue.Counters(LabPopId.A).GetValueOrDefault("program.decapsulated") > 0, "POP A decapsulated nothing");
            Assert.True(rescue.Counters(LabPopId.B).GetValueOrDefault("lookups.found") >= 1, "POP B found no owner");
        }
        finally
        {
            foreach (PacedStreamServer server in servers)
            {
                await server.DisposeAsync();
            }
        }
    }
}
