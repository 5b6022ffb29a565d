using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;

namespace MptcpAnycast.Lab;

/// <summary>
/// <c>mptcp-anycast lab measure</c>: the stall an anycast route change causes, over many flips. One lab, the POP server
/// in both POPs; for each flip a new MPTCP connection joins, then either downloads a paced stream or sends small
/// requests back to back, and the route flips mid-way. Reports the longest gap per flip, the median and the worst.
/// </summary>
public static class LabMeasure
{
    public static async Task<int> RunAsync(LabOptions options, string? afterJoin, int flips, bool requests, long rate, ToolCommand tool,
        TextWriter output, CancellationToken cancellationToken, bool noFlip = false)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(output);
        LabTopology lab = LabTopology.Up(options);
        var servers = new List<PopServer>();
        try
        {
            servers.Add(await PopServer.StartAsync(lab, lab.Pop(LabPopId.A), tool, afterJoin, cancellationToken: cancellationToken).ConfigureAwait(false));
            servers.Add(await PopServer.StartAsync(lab, lab.Pop(LabPopId.B), tool, afterJoin, cancellationToken: cancellationToken).ConfigureAwait(false));
            output.WriteLine($"# {flips} flips, {(requests ? "request/response (GET /bytes/1024 back to back)" : $"download (paced {rate / 1024} KiB/s)")}, "
                + $"{LabNames.Of(options.PathManager)} path manager, after join {afterJoin ?? "PreferUnicast (default)"}"
                + (noFlip ? "; CONTROL: the route is not moved" : ""));
            var gaps = new List<double>();
            int failed = 0;
            var target = new IPEndPoint(IPAddress.Parse(lab.Plan.Anycast4), PopServer.Port);
            for (int i = 0; i < flips; i++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using StreamProbe probe = await StreamProbe.ConnectAsync("mptcp", lab.Client, target, mptcp: true, dualStack: false, cancellationToken, blocking: requests).ConfigureAwait(false);
                string state = (await probe.WaitForJoinAsync(TimeSpan.FromSeconds(4), cancellationToken).ConfigureAwait(false)).GetProperty("state").GetString() ?? "?";
                double gap;
                string? error;
                if (requests)
                {
                    (gap, error) = await StreamProbe.RunOnOwnThread(() => RequestsAcrossFlipAsync(probe, noFlip ? null : lab, cancellationToken)).ConfigureAwait(false);
                }
                else
                {
                    Task stream = probe.StreamAsync(2, rate, TimeSpan.FromSeconds(5), cancellationToken);
                    await Task.WhenAny(stream, Task.Delay(TimeSpan.FromSeconds(1), cancellationToken)).ConfigureAwait(false);
                    if (!noFlip)
                    {
                        lab.Flip();
                    }

                    await stream.ConfigureAwait(false);
                    gap = probe.LongestGap.TotalMilliseconds;
                    error = probe.Survived ? null : probe.Error ?? "incomplete";
                }

                if (error is null)
                {
                    gaps.Add(gap);
                }
                else
                {
                    failed++;
                }

                output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"flip {i + 1,3}: join {state,-12} longest gap {gap,7:0.0} ms {(error is null ? "survived" : $"FAILED: {error}")}"));
            }

            gaps.Sort();
            if (gaps.Count > 0)
            {
                double median = gaps.Count % 2 == 1 ? gaps[gaps.Count / 2] : (gaps[(gaps.Count / 2) - 1] + gaps[gaps.Count / 2]) / 2;
                output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"longest gap over {gaps.Count} surviving flips: median {median:0.0} ms, worst {gaps[^1]:0.0} ms, best {gaps[0]:0.0} ms; {failed} failed"));
            }

            return failed == 0 ? 0 : 1;
        }
        finally
        {
            servers.ForEach(s => s.Dispose());
            lab.Down();
        }
    }

    /// <summary>
    /// Small requests back to back for 2 s on a blocking probe (run on its own thread), the route flipped after 1 s by
    /// another thread while the requests go on; the longest time one request took. The loop allocates nothing (see
    /// <see cref="StreamProbe.FetchAsync"/>). The probe's 5 s socket timeouts bound a request that never completes.
    /// </summary>
    private static async Task<(double GapMs, string? Error)> RequestsAcrossFlipAsync(StreamProbe probe, LabTopology? lab, CancellationToken cancellationToken)
    {
        byte[] request = StreamProbe.Request("/bytes/1024");
        var clock = Stopwatch.StartNew();
        Task flip = Task.CompletedTask;
        bool flipped = lab is null;
        double longest = 0;
        string? error = null;
        while (error is null && clock.Elapsed < TimeSpan.FromSeconds(2))
        {
            if (!flipped && clock.Elapsed > TimeSpan.FromSeconds(1))
            {
                flip = Task.Run(lab!.Flip, CancellationToken.None);
                flipped = true;
            }

            long start = Stopwatch.GetTimestamp();
            try
            {
                long length = await probe.FetchAsync(request, cancellationToken).ConfigureAwait(false);
                error = length == 1024 ? null : $"wrong body length {length}";
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException or System.Net.Sockets.SocketException)
            {
                error = ex.Message;
            }

            longest = Math.Max(longest, Stopwatch.GetElapsedTime(start).TotalMilliseconds);
        }

        await flip.ConfigureAwait(false);
        return (longest, error);
    }
}
