using System.Globalization;
using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Lab.Tests.Infrastructure;
using MptcpAnycast.Lab.Tests.Lab;
using Xunit.Abstractions;

namespace MptcpAnycast.Lab.Tests.Rescue;

/// <summary>
/// The stall a rescued connection sees at a flip: twenty new plain TCP connections, each streaming from A when the
/// route moves to B (so B looks each one up), and the time from B's first unknown segment to its owner map entry.
/// <c>MPTCP_LAB_RESULTS</c> names a file that gets one line per round (for docs/rescue.md).
/// </summary>
[Collection(AnycastLabCollection.Name)]
public sealed class RescueStallTests(ITestOutputHelper output)
{
    private const int Port = 8080;
    private const int Rounds = 20;
    private const int FirstSourcePort = 20000; // below the ephemeral range, so no other socket of the client takes them
    private static readonly PacedStreamSpec Spec = new(256 * 1024, 256 * 1024);

    /// <summary>The TCP counters that tell a retransmission timeout from a tail-loss probe, since the last call (nstat keeps history).</summary>
    private static string Tcp(LabNamespace ns) =>
        string.Join(' ', ns.TryExec("nstat", "TcpRetransSegs", "TcpExtTCPTimeouts", "TcpExtTCPLossProbes", "TcpInErrs", "TcpExtTCPSpuriousRTOs").Output
            .Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => !l.StartsWith('#')).Select(l => string.Join('=', l.Split(' ', StringSplitOptions.RemoveEmptyEntries).Take(2))));

    [LabFact]
    public async Task Twenty_rescued_connections_stall_a_median_of_less_than_one_retransmission_timeout_at_the_flip()
    {
        // The flips run ip on a pool thread; with the default minimum the receiver's reads wait for a new one (a stall
        // of the test, not of the connection).
        using var headroom = new ThreadPoolHeadroom(16);
        using LabTopology lab = LabTool.Up(new LabOptions());
        using LabRescue rescue = await LabRescue.StartAsync(lab, LabTool.Command);
        await using PacedStreamServer serverA = PacedStreamServer.Start(lab.Pop(LabPopId.A).Namespace, new IPEndPoint(IPAddress.Any, Port), Spec);
        var gaps = new List<double>();
        for (int round = 1; round <= Rounds; round++)
        {
            lab.FlipTo(LabPopId.A);
            using Socket client = lab.Client.Run(() => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
            // A source port of its own per round: the server closes first, so the client keeps no time-wait and the kernel
            // may pick an earlier round's port again; B still holds that tuple's owner and would tunnel it unasked.
            client.Bind(new IPEndPoint(IPAddress.Any, FirstSourcePort + round));
            await client.ConnectAsync(new IPEndPoint(IPAddress.Parse(lab.Plan.Anycast4), Port)).WithTimeout(TimeSpan.FromSeconds(5), "connect");
            StreamReceiver receiver = StreamReceiver.Start(client, Spec, TaskTimeoutExtensions.Within(TimeSpan.FromSeconds(20)));
            Assert.True(await receiver.WaitForAsync(Spec.TotalBytes / 3, TimeSpan.FromSeconds(5)), $"round {round}: the stream did not start");
            lab.FlipTo(LabPopId.B);
            StreamOutcome outcome = await receiver.Completion.WaitAsync(TimeSpan.FromSeconds(15));
            if (!outcome.Complete)
            {
                await Task.Delay(1200); // the status file is written once a second
                Assert.Fail($"round {round}: not rescued: {outcome}; {RescueLab.DescribeCounters(lab, rescue.Counters)}; B said: {rescue.Output(LabPopId.B)}");
            }
            gaps.Add(outcome.LongestGapMs);
            string line = string.Create(CultureInfo.InvariantCulture,
                $"rescue stall | round {round} | longest gap {outcome.LongestGapMs:0.0} ms | A: {Tcp(lab.Pop(LabPopId.A).Namespace)} | client: {Tcp(lab.Client)}");
            output.WriteLine(line);
            if (Environment.GetEnvironmentVariable("MPTCP_LAB_RESULTS") is { Length: > 0 } path)
            {
                File.AppendAllText(path, line + Environment.NewLine);
            }
        }

        await Task.Delay(1200); // the status file is written once a second
        IReadOnlyDictionary<string, long> b = rescue.Counters(LabPopId.B);
        double[] sorted = [.. gaps.Order()];
        double median = (sorted[(Rounds - 1) / 2] + sorted[Rounds / 2]) / 2;
        long found = b.GetValueOrDefault("lookups.found");
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"stall median {median:0.0} ms, worst {sorted[^1]:0.0} ms; B found {found} owners, first miss to owner entry mean {b.GetValueOrDefault("lookups.total_found_microseconds") / (double)Math.Max(1, found) / 1000:0.00} ms, max {b.GetValueOrDefault("lookups.max_found_microseconds") / 1000.0:0.00} ms; held segments sent {b.GetValueOrDefault("lookups.held_sent")}"));
        output.WriteLine(rescue.Output(LabPopId.B));
        Assert.InRange(found, Rounds, Rounds + 5); // a segment that arrives while the owner entry is being written asks again
        Assert.True(median < 200, $"median stall {median:0} ms: {string.Join(", ", sorted.Select(g => g.ToString("0", CultureInfo.InvariantCulture)))}");
    }
}
