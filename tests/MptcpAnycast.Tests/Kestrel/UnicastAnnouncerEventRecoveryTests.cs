using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using Microsoft.Extensions.Time.Testing;
using MptcpAnycast.Kestrel;
using MptcpAnycast.Kestrel.Announcing;
using MptcpAnycast.Kestrel.Diagnostics;
using MptcpAnycast.Kestrel.Internal;

namespace MptcpAnycast.Tests.Kestrel;

/// <summary>
/// The announcer when its event stream breaks (the event socket failed): it keeps serving, reads joins from the
/// sockets, subscribes again with backoff on a fake clock, and reconciles what happened in the gap.
/// </summary>
public sealed class UnicastAnnouncerEventRecoveryTests
{
    private const int EventsLostLog = 11, EventsUnavailableLog = 15, EventsResumedLog = 21, ResubscribeFailedLog = 22;
    private static readonly IPAddress UnicastAddress = IPAddress.Parse("127.0.0.2");

    private static MptcpAnycastSettings Settings() => MptcpAnycastSettings.Validate(
        new MptcpAnycastOptions { UnicastAddresses = ["127.0.0.2"], JoinTimeout = TimeSpan.FromMinutes(10) }, [UnicastAddress]);

    /// <summary>A stand-in for the socket's subflow list: connections in <paramref name="joined"/> have a second subflow to the unicast address.</summary>
    private static Func<MptcpConnectionState, IReadOnlyList<MptcpSubflow>> Subflows(ConcurrentDictionary<uint, bool> joined) => state =>
    {
        var anycast = new MptcpSubflow(state.Local!, state.Remote!);
        return joined.ContainsKey(state.Token)
            ? [anycast, new MptcpSubflow(new IPEndPoint(UnicastAddress, state.Local!.Port), new IPEndPoint(state.Remote!.Address, 40000))]
            : [anycast];
    };

    /// <summary>Moves the fake clock in steps, giving the announcer's loops real time to run after each, until <paramref name="done"/>.</summary>
    private static async Task<bool> AdvanceUntilAsync(FakeTimeProvider time, Func<bool> done, TimeSpan step, TimeSpan max)
    {
        for (TimeSpan advanced = TimeSpan.Zero; advanced < max && !done(); advanced += step)
        {
            time.Advance(step);
            await Task.Delay(15);
        }

        return done();
    }

    [Fact]
    public async Task A_join_whose_event_the_kernel_dropped_silently_is_found_at_the_join_timeout_instead_of_timing_out()
    {
        // The kernel drops events without a word while its queue is congested; the sweeper looks at the socket once more
        // before it declares a join timed out.
        var time = new FakeTimeProvider();
        var joined = new ConcurrentDictionary<uint, bool>();
        var pm = new FakePathManager();
        MptcpAnycastSettings settings = MptcpAnycastSettings.Validate(
            new MptcpAnycastOptions { UnicastAddresses = ["127.0.0.2"], JoinTimeout = TimeSpan.FromSeconds(5) }, [UnicastAddress]);
        await using var announcer = new UnicastAnnouncer(settings, AnnouncementMode.Userspace, pm, null, new RecordingLogger(),
            new MptcpAnycastMetrics(MetricRecorder.CreateFactory()), time)
        {
            SubflowReader = Subflows(joined),
        };
        using LoopbackPair silentJoin = await LoopbackPair.ConnectAsync();
        using LoopbackPair noJoin = await LoopbackPair.ConnectAsync();
        MptcpConnectionState joinedState = announcer.OnAccepted(silentJoin.Server, "silent-join");
        MptcpConnectionState lonelyState = announcer.OnAccepted(noJoin.Server, "no-join");
        await Eventually.TrueAsync(() => joinedState.State == UnicastSubflowState.Announced && lonelyState.State == UnicastSubflowState.Announced, "both announced");
        Assert.True(announcer.IsFollowingEvents);
        joined[joinedState.Token] = true; // the join happened; its event never comes

        time.Advance(TimeSpan.FromSeconds(4));
        await Task.Delay(50);
        Assert.Equal(UnicastSubflowState.Announced, joinedState.State); // following events: no polling before the timeout

        Assert.True(await AdvanceUntilAsync(time, () => lonelyState.State == UnicastSubflowState.JoinTimedOut, TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(10)),
            $"the connection without a join should time out: {lonelyState.State}");
        Assert.Equal(UnicastSubflowState.Joined, joinedState.State);
    }

    [Fact]
    public async Task Broken_event_stream_falls_back_to_polling_resubscribes_with_backoff_and_reconciles_the_gap()
    {
        var time = new FakeTimeProvider();
        DateTimeOffset brokeAt = time.GetUtcNow();
        var attempts = new ConcurrentQueue<TimeSpan>();
        var joined = new ConcurrentDictionary<uint, bool>();
        bool pathManagerBack = false;
        MptcpConnectionState? late = null;
        var pm = new FakePathManager();
        pm.Resubscribe = () =>
        {
            attempts.Enqueue(time.GetUtcNow() - brokeAt);
            if (!pathManagerBack)
            {
                return false;
            }

            // This client joins in the gap, just before the subscription is back: only reconciling can see it.
            joined[late!.Token] = true;
            return true;
        };
        var logger = new RecordingLogger();
        var meters = MetricRecorder.CreateFactory();
        using var metrics = new MetricRecorder(meters);
        await using var announcer = new UnicastAnnouncer(Settings(), AnnouncementMode.Userspace, pm, null, logger, new MptcpAnycastMetrics(meters), time)
        {
            SubflowReader = Subflows(joined),
        };
        using LoopbackPair pairA = await LoopbackPair.ConnectAsync();
        using LoopbackPair pairB = await LoopbackPair.ConnectAsync();
        MptcpConnectionState early = announcer.OnAccepted(pairA.Server, "early");
        late = announcer.OnAccepted(pairB.Server, "late");
        await Eventually.TrueAsync(() => early.State == UnicastSubflowState.Announced && late.State == UnicastSubflowState.Announced, "both announced");
        Assert.True(announcer.IsFollowingEvents);

        pm.FailEvents(new FakePathManagerException(PathManagerFailure.Systemic));
        await Eventually.TrueAsync(() => !announcer.IsFollowingEvents, "fell back to the sockets");

        // While resubscribing fails, the sweeper reads joins from the sockets (its tick is every second here).
        joined[early.Token] = true;
        Assert.True(await AdvanceUntilAsync(time, () => early.State == UnicastSubflowState.Joined, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(1.5)),
            "the sweeper did not find the join in the socket");
        Assert.Equal(UnicastSubflowState.Announced, late.State);
        Assert.InRange(attempts.Count, 2, 4); // at 100, 300, 700 ms (and 1.5 s)
        Assert.False(announcer.IsFollowingEvents);

        // The path manager works again: the next try succeeds, and the join made in the gap is reconciled.
        pathManagerBack = true;
        Assert.True(await AdvanceUntilAsync(time, () => announcer.IsFollowingEvents, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(10)),
            "never subscribed again");
        await Eventually.TrueAsync(() => late.State == UnicastSubflowState.Joined, "the gap's join reconciled");

        await Eventually.TrueAsync(() => logger.Count(EventsLostLog) == 1, "reconciliation logged");
        Assert.Equal(1, metrics["mptcp_anycast.path_manager.events_lost"]);
        Assert.Equal(1, logger.Count(EventsUnavailableLog)); // once, not per attempt
        Assert.Equal(1, logger.Count(EventsResumedLog));
        Assert.Equal(attempts.Count - 1, logger.Count(ResubscribeFailedLog));
        AssertBackoff(attempts.ToArray());

        // Events flow on the new stream.
        pm.Emit(new PathEvent(PathEventKind.Closed, early.Token, null, null));
        await Eventually.TrueAsync(() => announcer.TrackedConnections == 1, "the close on the new stream was heard");
    }

    [Fact]
    public async Task Resubscribing_that_keeps_failing_backs_off_to_five_seconds_serves_on_and_stops_on_dispose()
    {
        var time = new FakeTimeProvider();
        DateTimeOffset brokeAt = time.GetUtcNow();
        var attempts = new ConcurrentQueue<TimeSpan>();
        var pm = new FakePathManager();
        pm.Resubscribe = () =>
        {
            attempts.Enqueue(time.GetUtcNow() - brokeAt);
            return false;
        };
        var logger = new RecordingLogger();
        var meters = MetricRecorder.CreateFactory();
        var announcer = new UnicastAnnouncer(Settings(), AnnouncementMode.Userspace, pm, null, logger, new MptcpAnycastMetrics(meters), time);
        var pairs = new List<LoopbackPair>();
        try
        {
            pm.FailEvents(new FakePathManagerException(PathManagerFailure.Systemic));
            await Eventually.TrueAsync(() => !announcer.IsFollowingEvents, "fell back to the sockets");

            // No tight loop: while the clock does not move, nothing is retried.
            await Task.Delay(300);
            Assert.Empty(attempts);

            // 30 s on the clock: tries at 0.1, 0.3, 0.7, 1.5, 3.1, 6.3, 11.3, 16.3, 21.3, 26.3 s at most.
            await AdvanceUntilAsync(time, () => false, TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(30));
            Assert.InRange(attempts.Count, 6, 10);
            TimeSpan[] times = attempts.ToArray();
            AssertBackoff(times);
            for (int i = 6; i < times.Length; i++)
            {
                Assert.True(times[i] - times[i - 1] <= TimeSpan.FromSeconds(6), $"try {i}: {times[i] - times[i - 1]} after the previous one; the cap is 5 s");
            }

            Assert.Equal(1, logger.Count(EventsUnavailableLog));
            Assert.Equal(attempts.Count, logger.Count(ResubscribeFailedLog));

            // Meanwhile connections are served and announced as usual.
            LoopbackPair pair = await LoopbackPair.ConnectAsync();
            pairs.Add(pair);
            MptcpConnectionState state = announcer.OnAccepted(pair.Server, "during the outage");
            await Eventually.TrueAsync(() => state.State == UnicastSubflowState.Announced, "announced during the outage");
        }
        finally
        {
            var stopwatch = Stopwatch.StartNew();
            await announcer.DisposeAsync();
            Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(3), $"dispose took {stopwatch.Elapsed}: the retry loop did not stop");
            pairs.ForEach(p => p.Dispose());
        }

        int afterDispose = attempts.Count;
        time.Advance(TimeSpan.FromSeconds(60));
        await Task.Delay(100);
        Assert.Equal(afterDispose, attempts.Count);
    }

    [Fact]
    public async Task Event_stream_that_ends_while_not_stopping_is_subscribed_again()
    {
        var time = new FakeTimeProvider();
        var pm = new FakePathManager();
        var logger = new RecordingLogger();
        await using var announcer = new UnicastAnnouncer(Settings(), AnnouncementMode.Userspace, pm, null, logger,
            new MptcpAnycastMetrics(MetricRecorder.CreateFactory()), time);

        pm.FailEvents(null);
        await Eventually.TrueAsync(() => !announcer.IsFollowingEvents, "noticed the end");
        Assert.True(await AdvanceUntilAsync(time, () => announcer.IsFollowingEvents, TimeSpan.FromMilliseconds(50), TimeSpan.FromSeconds(1)));

        Assert.Equal(1, pm.ResubscribeCalls);
        Assert.Contains(logger.Entries, e => e.EventId == EventsUnavailableLog && e.Message.Contains("ended", StringComparison.Ordinal));
        Assert.Equal(1, logger.Count(EventsResumedLog));
    }

    /// <summary>Each try waits at least 100 ms, then twice the previous wait, capped at 5 s.</summary>
    private static void AssertBackoff(TimeSpan[] times)
    {
        Assert.True(times[0] >= UnicastAnnouncer.FirstResubscribeDelay, $"first try after {times[0]}");
        TimeSpan expected = UnicastAnnouncer.FirstResubscribeDelay;
        for (int i = 1; i < times.Length; i++)
        {
            expected = expected * 2 < UnicastAnnouncer.MaxResubscribeDelay ? expected * 2 : UnicastAnnouncer.MaxResubscribeDelay;
            Assert.True(times[i] - times[i - 1] >= expected, $"try {i} came {times[i] - times[i - 1]} after the previous one; expected at least {expected}");
        }
    }
}

public sealed class UnicastAnnouncerDelayTests
{
    private static readonly IPAddress UnicastAddress = IPAddress.Parse("127.0.0.2");

    [Fact]
    public async Task A_delayed_announcement_is_made_when_due_and_never_for_a_connection_closed_before()
    {
        var time = new FakeTimeProvider();
        var pm = new FakePathManager();
        var meters = MetricRecorder.CreateFactory();
        var metrics = new MetricRecorder(meters);
        MptcpAnycastSettings settings = MptcpAnycastSettings.Validate(
            new MptcpAnycastOptions { UnicastAddresses = ["127.0.0.2"], AnnounceDelay = TimeSpan.FromMilliseconds(200) }, [UnicastAddress]);
        await using var announcer = new UnicastAnnouncer(settings, AnnouncementMode.Userspace, pm, null, new RecordingLogger(),
            new MptcpAnycastMetrics(meters), time);
        using LoopbackPair shortLived = await LoopbackPair.ConnectAsync();
        using LoopbackPair longLived = await LoopbackPair.ConnectAsync();
        MptcpConnectionState brief = announcer.OnAccepted(shortLived.Server, "brief");
        MptcpConnectionState lasting = announcer.OnAccepted(longLived.Server, "lasting");
        Assert.Contains("AnnounceDelay", lasting.StateReason);
        Assert.Equal(2, announcer.TrackedConnections);

        announcer.OnClosed(brief); // ends within the delay
        time.Advance(TimeSpan.FromMilliseconds(150));
        await Task.Delay(100);
        Assert.Empty(pm.Calls); // not due yet
        Assert.Equal(UnicastSubflowState.NotAnnounced, lasting.State);

        for (int i = 0; i < 20 && lasting.State != UnicastSubflowState.Announced; i++)
        {
            time.Advance(TimeSpan.FromMilliseconds(50));
            await Task.Delay(20);
        }

        Assert.Equal(UnicastSubflowState.Announced, lasting.State);
        Assert.Equal($"announce {lasting.Token:x8} 1 127.0.0.2:0", Assert.Single(pm.Calls)); // only the connection still open
        Assert.Equal(1, metrics["mptcp_anycast.announcements|sent"]);
        Assert.Equal(1, metrics["mptcp_anycast.announcements|closed_before_delay"]);
        Assert.Equal(UnicastSubflowState.NotAnnounced, brief.State);
    }
}
