using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.Time.Testing;
using MptcpAnycast.Interop;
using MptcpAnycast.Kestrel;
using MptcpAnycast.Kestrel.Connections;
using MptcpAnycast.Kestrel.Control;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Tests.Control;

/// <summary>
/// How the control path learns of joins: events, the socket when events were lost or broke off, the socket again when
/// the application reads the state; and when it forgets a connection.
/// </summary>
public sealed class JoinTrackingTests
{
    private const int EventsLostLog = 11, EventsUnavailableLog = 15, EventsResumedLog = 21, ResubscribeFailedLog = 22;
    private const string TrackedGauge = "mptcp_anycast.connections.tracked";

    [Fact]
    public async Task State_read_while_the_join_event_is_still_on_its_way_comes_from_the_socket()
    {
        // The kernel has the client's subflow; its event has not been handled yet (a short request is answered sooner).
        await using ControlPathHarness h = new ControlPathHarness().Start();
        MptcpConnectionFeature feature = await h.AcceptAsync();
        await Eventually.TrueAsync(() => feature.Connection.State == UnicastSubflowState.Announced, "announced");

        h.JoinInSocket(feature.Connection);

        Assert.Equal(UnicastSubflowState.Joined, feature.State);
        Assert.NotNull(feature.JoinedAt);
        Assert.Equal(1, h.Metrics["mptcp_anycast.joins"]);
        h.JoinWithEvent(feature.Connection); // the late event changes nothing
        Assert.Equal(1, h.Metrics["mptcp_anycast.joins"]);
    }

    [Fact]
    public async Task A_join_the_kernel_reports_after_the_close_still_counts_and_the_connection_is_forgotten_at_the_join_timeout()
    {
        var time = new FakeTimeProvider();
        await using ControlPathHarness h = new ControlPathHarness(new MptcpAnycastOptions { JoinTimeout = TimeSpan.FromSeconds(2) }, time: time).Start();
        MptcpConnectionFeature feature = await h.AcceptAsync();
        await Eventually.TrueAsync(() => feature.Connection.State == UnicastSubflowState.Announced, "announced");

        feature.OnConnectionClosed(); // Kestrel: the client closed right after its request
        await Eventually.TrueAsync(() => feature.Connection.IsClosed, "closed");
        Assert.Equal(1, h.Control.TrackedConnections); // still waiting for a late join
        Assert.Null(feature.Connection.Socket); // but not holding on to the socket's objects meanwhile
        Assert.Empty(feature.GetSubflows());

        h.JoinWithEvent(feature.Connection);
        Assert.Equal(1, h.Metrics["mptcp_anycast.joins"]);
        Assert.Single(h.PathManager.Calls); // no after-join command for a closed connection

        await AdvanceUntilAsync(time, () => h.Control.TrackedConnections == 0, TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(5));
        Assert.Equal(0, h.Metrics.Observe(TrackedGauge));
        Assert.Equal(0, h.Metrics["mptcp_anycast.join.timeouts"]); // a closed connection never times out
    }

    [Fact]
    public async Task Lost_events_are_reconciled_from_the_socket()
    {
        await using ControlPathHarness h = new ControlPathHarness().Start();
        MptcpConnectionFeature joined = await h.AcceptAsync();
        MptcpConnectionFeature lonely = await h.AcceptAsync();
        await Eventually.TrueAsync(() => joined.Connection.State == UnicastSubflowState.Announced && lonely.Connection.State == UnicastSubflowState.Announced, "announced");
        h.JoinInSocket(joined.Connection); // its event was among the lost ones

        h.PathManager.Emit(new PathManagerEvent { Type = PathManagerEventType.EventsLost });
        await Eventually.TrueAsync(() => h.Metrics["mptcp_anycast.path_manager.events_lost"] == 1, "loss counted");

        await Eventually.TrueAsync(() => h.Logger.Count(EventsLostLog) == 1, "reconciliation logged");
        Assert.Contains(h.Logger.Messages(EventsLostLog), m => m.Contains("2 connection(s)", StringComparison.Ordinal));
        Assert.Equal(UnicastSubflowState.Joined, joined.Connection.State);
        Assert.Equal(UnicastSubflowState.Announced, lonely.Connection.State);
    }

    [Fact]
    public async Task Tracked_connections_gauge_rises_with_announced_connections_and_returns_to_zero_after_they_close()
    {
        await using ControlPathHarness h = new ControlPathHarness().Start();
        Assert.Equal(0, h.Metrics.Observe(TrackedGauge));

        var features = new List<MptcpConnectionFeature>();
        for (int i = 0; i < 3; i++)
        {
            features.Add(await h.AcceptAsync());
            await Eventually.TrueAsync(() => h.Metrics.Observe(TrackedGauge) == i + 1, $"{i + 1} tracked");
        }

        await h.AcceptAsync(mptcpClient: false);
        await Eventually.TrueAsync(() => h.Metrics["mptcp_anycast.connections|tcp"] == 1, "the plain TCP one looked at (the client did not offer MPTCP: tcp, not tcp_fallback)");
        Assert.Equal(3, h.Metrics.Observe(TrackedGauge)); // plain TCP has nothing to track

        h.JoinWithEvent(features[0].Connection);
        features.ForEach(f => f.OnConnectionClosed());
        await Eventually.TrueAsync(() => h.Metrics.Observe(TrackedGauge) == 2, "the joined one forgotten at once");
    }

    [Fact]
    public async Task A_join_whose_event_the_kernel_dropped_silently_is_found_at_the_join_timeout_instead_of_timing_out()
    {
        // The kernel drops events without a word while its queue is congested; the sweeper looks at the socket once more
        // before it declares a join timed out.
        var time = new FakeTimeProvider();
        await using ControlPathHarness h = new ControlPathHarness(new MptcpAnycastOptions { JoinTimeout = TimeSpan.FromSeconds(5) }, time: time).Start();
        MptcpConnectionFeature silentJoin = await h.AcceptAsync();
        MptcpConnectionFeature noJoin = await h.AcceptAsync();
        await Eventually.TrueAsync(() => silentJoin.Connection.State == UnicastSubflowState.Announced && noJoin.Connection.State == UnicastSubflowState.Announced, "both announced");
        Assert.True(h.Control.IsFollowingEvents);
        h.JoinInSocket(silentJoin.Connection); // the join happened; its event never comes

        time.Advance(TimeSpan.FromSeconds(4));
        await Task.Delay(50);
        Assert.Equal(UnicastSubflowState.Announced, silentJoin.Connection.State); // following events: no polling before the timeout

        Assert.True(await AdvanceUntilAsync(time, () => noJoin.Connection.State == UnicastSubflowState.JoinTimedOut, TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(10)),
            $"the connection without a join should time out: {noJoin.Connection.State}");
        // The sweep that timed the other one out looks at this one too, maybe a moment later: wait for its verdict.
        await Eventually.TrueAsync(() => silentJoin.Connection.State != UnicastSubflowState.Announced, "the silent join decided");
        Assert.Equal(UnicastSubflowState.Joined, silentJoin.Connection.State);
    }

    [Fact]
    public async Task Broken_event_stream_falls_back_to_polling_resubscribes_with_backoff_and_reconciles_the_gap()
    {
        var time = new FakeTimeProvider();
        DateTimeOffset brokeAt = time.GetUtcNow();
        var attempts = new ConcurrentQueue<TimeSpan>();
        bool pathManagerBack = false;
        TrackedConnection? late = null;
        await using var h = new ControlPathHarness(new MptcpAnycastOptions { JoinTimeout = TimeSpan.FromMinutes(10) }, time: time);
        h.PathManager.Subscribe = () =>
        {
            if (late is null)
            {
                return true; // the first subscription, at start
            }

            attempts.Enqueue(time.GetUtcNow() - brokeAt);
            if (!pathManagerBack)
            {
                return false;
            }

            // This client joins in the gap, just before the subscription is back: only reconciling can see it.
            h.JoinInSocket(late);
            return true;
        };
        h.Start();
        MptcpConnectionFeature early = await h.AcceptAsync();
        MptcpConnectionFeature lateFeature = await h.AcceptAsync();
        await Eventually.TrueAsync(() => early.Connection.State == UnicastSubflowState.Announced && lateFeature.Connection.State == UnicastSubflowState.Announced, "both announced");
        late = lateFeature.Connection;
        Assert.True(h.Control.IsFollowingEvents);

        h.PathManager.FailEvents(FakePathManager.Failure(Errno.EBADF, "receive mptcp_pm_events"));
        await Eventually.TrueAsync(() => !h.Control.IsFollowingEvents, "fell back to the sockets");

        // While resubscribing fails, the sweeper reads joins from the sockets (its tick is every second here).
        h.JoinInSocket(early.Connection);
        Assert.True(await AdvanceUntilAsync(time, () => early.Connection.State == UnicastSubflowState.Joined, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(1.5)),
            "the sweeper did not find the join in the socket");
        Assert.Equal(UnicastSubflowState.Announced, late.State);
        Assert.InRange(attempts.Count, 2, 4); // at 100, 300, 700 ms (and 1.5 s)
        Assert.False(h.Control.IsFollowingEvents);

        // The path manager works again: the next try succeeds, and the join made in the gap is reconciled.
        pathManagerBack = true;
        Assert.True(await AdvanceUntilAsync(time, () => h.Control.IsFollowingEvents, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(10)),
            "never subscribed again");
        await Eventually.TrueAsync(() => late.State == UnicastSubflowState.Joined, "the gap's join reconciled");

        await Eventually.TrueAsync(() => h.Logger.Count(EventsLostLog) == 1, "reconciliation logged");
        Assert.Equal(1, h.Metrics["mptcp_anycast.path_manager.events_lost"]);
        Assert.Equal(1, h.Logger.Count(EventsUnavailableLog)); // once, not per attempt
        Assert.Equal(1, h.Logger.Count(EventsResumedLog));
        Assert.Equal(attempts.Count - 1, h.Logger.Count(ResubscribeFailedLog));
        AssertBackoff(attempts.ToArray(), ControlPathTuning.Default);

        // Events flow on the new subscription.
        MptcpConnectionFeature after = await h.AcceptAsync();
        await Eventually.TrueAsync(() => after.Connection.State == UnicastSubflowState.Announced, "announced");
        h.JoinWithEvent(after.Connection);
        Assert.Equal(UnicastSubflowState.Joined, after.Connection.State);
    }

    [Fact]
    public async Task Resubscribing_that_keeps_failing_backs_off_to_five_seconds_serves_on_and_stops_on_dispose()
    {
        var time = new FakeTimeProvider();
        DateTimeOffset brokeAt = time.GetUtcNow();
        var attempts = new ConcurrentQueue<TimeSpan>();
        bool started = false;
        var h = new ControlPathHarness(new MptcpAnycastOptions { JoinTimeout = TimeSpan.FromMinutes(10) }, time: time);
        h.PathManager.Subscribe = () =>
        {
            if (!started)
            {
                return started = true;
            }

            attempts.Enqueue(time.GetUtcNow() - brokeAt);
            return false;
        };
        h.Start();
        try
        {
            h.PathManager.FailEvents(FakePathManager.Failure(Errno.EBADF, "receive mptcp_pm_events"));
            await Eventually.TrueAsync(() => !h.Control.IsFollowingEvents, "fell back to the sockets");

            // No tight loop: while the clock does not move, nothing is retried.
            await Task.Delay(300);
            Assert.Empty(attempts);

            // 30 s on the clock: tries at 0.1, 0.3, 0.7, 1.5, 3.1, 6.3, 11.3, 16.3, 21.3, 26.3 s at most.
            await AdvanceUntilAsync(time, () => false, TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(30));
            Assert.InRange(attempts.Count, 6, 10);
            TimeSpan[] times = attempts.ToArray();
            AssertBackoff(times, ControlPathTuning.Default);
            for (int i = 6; i < times.Length; i++)
            {
                Assert.True(times[i] - times[i - 1] <= TimeSpan.FromSeconds(6), $"try {i}: {times[i] - times[i - 1]} after the previous one; the cap is 5 s");
            }

            Assert.Equal(1, h.Logger.Count(EventsUnavailableLog));
            Assert.Equal(attempts.Count, h.Logger.Count(ResubscribeFailedLog));

            // Meanwhile connections are served and announced as usual.
            MptcpConnectionFeature during = await h.AcceptAsync();
            await Eventually.TrueAsync(() => during.Connection.State == UnicastSubflowState.Announced, "announced during the outage");
        }
        finally
        {
            var stopwatch = Stopwatch.StartNew();
            await h.DisposeAsync();
            Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(3), $"dispose took {stopwatch.Elapsed}: the retry loop did not stop");
        }

        int afterDispose = attempts.Count;
        time.Advance(TimeSpan.FromSeconds(60));
        await Task.Delay(100);
        Assert.Equal(afterDispose, attempts.Count);
    }

    [Fact]
    public async Task Userspace_mode_without_events_turns_announcements_off_because_the_kernel_would_reset_every_join()
    {
        await using var h = new ControlPathHarness();
        h.PathManager.Subscribe = static () => false;
        h.Start();

        MptcpConnectionFeature feature = await h.AcceptAsync();
        await Eventually.TrueAsync(() => feature.Connection.State == UnicastSubflowState.Failed, "not announced");
        Assert.Contains("announcements are off", feature.StateReason);
        Assert.StartsWith("announcements are off", h.Control.AnnouncementsOffReason, StringComparison.Ordinal); // the health check's reason
        Assert.Empty(h.PathManager.Calls);
        Assert.Equal(1, h.Logger.Count(16)); // NoNetAdmin
    }

    [Fact]
    public async Task A_delayed_announcement_is_made_when_due_and_never_for_a_connection_closed_before()
    {
        var time = new FakeTimeProvider();
        await using ControlPathHarness h = new ControlPathHarness(new MptcpAnycastOptions { AnnounceDelay = TimeSpan.FromMilliseconds(200) }, time: time).Start();
        MptcpConnectionFeature brief = await h.AcceptAsync();
        MptcpConnectionFeature lasting = await h.AcceptAsync();
        await Eventually.TrueAsync(() => h.Control.TrackedConnections == 2, "both tracked");
        Assert.Contains("AnnounceDelay", lasting.StateReason);

        brief.OnConnectionClosed(); // ends within the delay
        time.Advance(TimeSpan.FromMilliseconds(150));
        await Task.Delay(100);
        Assert.Empty(h.PathManager.Calls); // not due yet
        Assert.Equal(UnicastSubflowState.NotAnnounced, lasting.Connection.State);

        Assert.True(await AdvanceUntilAsync(time, () => lasting.Connection.State == UnicastSubflowState.Announced, TimeSpan.FromMilliseconds(50), TimeSpan.FromSeconds(1)));
        Assert.Equal($"announce {lasting.Token:x8} 1 127.0.0.2:0", Assert.Single(h.PathManager.Calls)); // only the connection still open
        Assert.Equal(1, h.Metrics["mptcp_anycast.announcements|sent"]);
        Assert.Equal(1, h.Metrics["mptcp_anycast.announcements|closed_before_delay"]);
        Assert.Equal(UnicastSubflowState.NotAnnounced, brief.Connection.State);
    }

    /// <summary>Moves the fake clock in steps, giving the control loop real time to run after each, until <paramref name="done"/>.</summary>
    private static async Task<bool> AdvanceUntilAsync(FakeTimeProvider time, Func<bool> done, TimeSpan step, TimeSpan max)
    {
        for (TimeSpan advanced = TimeSpan.Zero; advanced < max && !done(); advanced += step)
        {
            time.Advance(step);
            await Task.Delay(15);
        }

        return done();
    }

    /// <summary>Each try waits at least the first delay, then twice the previous wait, capped.</summary>
    private static void AssertBackoff(TimeSpan[] times, ControlPathTuning tuning)
    {
        Assert.True(times[0] >= tuning.FirstResubscribeDelay, $"first try after {times[0]}");
        TimeSpan expected = tuning.FirstResubscribeDelay;
        for (int i = 1; i < times.Length; i++)
        {
            expected = expected * 2 < tuning.MaxResubscribeDelay ? expected * 2 : tuning.MaxResubscribeDelay;
            Assert.True(times[i] - times[i - 1] >= expected, $"try {i} came {times[i] - times[i - 1]} after the previous one; expected at least {expected}");
        }
    }
}
