using System.Net;
using Microsoft.Extensions.Logging.Abstractions;
using MptcpAnycast.Kestrel;
using MptcpAnycast.Kestrel.Announcing;
using MptcpAnycast.Kestrel.Diagnostics;
using MptcpAnycast.Kestrel.Internal;

namespace MptcpAnycast.Tests.Kestrel;

/// <summary>
/// The announcer against real loopback MPTCP sockets and a fake path manager: what it announces, how it follows
/// joins, and how it behaves when the path manager fails.
/// </summary>
[Collection(CircuitBreakDurationCollection.Name)]
public sealed class UnicastAnnouncerTests
{
    // Loopback connections are "anycast" here (no anycast list); the unicast address only has to differ from 127.0.0.1.
    private static readonly IPEndPoint Unicast = IPEndPoint.Parse("127.0.0.2:0");

    private static MptcpAnycastSettings Settings(AfterJoinPolicy afterJoin = AfterJoinPolicy.PreferUnicast, AnnounceOn on = AnnounceOn.Accept,
        TimeSpan? joinTimeout = null) => MptcpAnycastSettings.Validate(new MptcpAnycastOptions
        {
            UnicastAddresses = ["127.0.0.2"],
            AfterJoin = afterJoin,
            AnnounceOn = on,
            JoinTimeout = joinTimeout ?? TimeSpan.FromSeconds(5),
        }, [IPAddress.Parse("127.0.0.2")]);

    private static (UnicastAnnouncer Announcer, MetricRecorder Metrics) Create(MptcpAnycastSettings settings, FakePathManager? pm,
        AnnouncementMode mode = AnnouncementMode.Userspace)
    {
        var meters = MetricRecorder.CreateFactory();
        var recorder = new MetricRecorder(meters);
        var announcer = new UnicastAnnouncer(settings, mode, pm, pm is null ? "no path manager in this test" : null,
            NullLogger.Instance, new MptcpAnycastMetrics(meters), TimeProvider.System);
        return (announcer, recorder);
    }

    [Fact]
    public async Task Accepted_mptcp_connection_is_announced_with_its_own_token_and_joins_on_the_event()
    {
        var pm = new FakePathManager();
        (UnicastAnnouncer announcer, MetricRecorder metrics) = Create(Settings(), pm);
        await using UnicastAnnouncer disposeAnnouncer = announcer;
        using LoopbackPair pair = await LoopbackPair.ConnectAsync();

        MptcpConnectionState state = announcer.OnAccepted(pair.Server, "c1");
        await Eventually.TrueAsync(() => state.State == UnicastSubflowState.Announced, "announced");

        uint token = MptcpSocket.GetConnectionInfo(pair.Server).Token;
        Assert.Equal(token, state.Token);
        int port = ((IPEndPoint)pair.Server.LocalEndPoint!).Port;
        Assert.Equal($"announce {token:x8} 1 127.0.0.2:0", Assert.Single(pm.Calls)); // the connection's own port: no port field
        Assert.Equal(new IPEndPoint(IPAddress.Parse("127.0.0.2"), port), state.AnnouncedEndPoint);

        pm.Emit(new PathEvent(PathEventKind.SubflowEstablished, token, new IPEndPoint(IPAddress.Parse("127.0.0.2"), port), IPEndPoint.Parse("127.0.0.1:5555")));
        await Eventually.TrueAsync(() => state.State == UnicastSubflowState.Joined, "joined");
        await Eventually.TrueAsync(() => pm.Calls.Count == 2, "after-join command");

        Assert.StartsWith($"backup {token:x8} 127.0.0.1:{port} 127.0.0.1:{((IPEndPoint)pair.Client.LocalEndPoint!).Port} True", pm.Calls.Last());
        Assert.NotNull(state.JoinedAt);
        Assert.Equal(1, metrics["mptcp_anycast.joins"]);
        Assert.Equal(1, metrics["mptcp_anycast.announcements|sent"]);
        Assert.Equal(1, metrics["mptcp_anycast.connections|mptcp"]);
    }

    [Fact]
    public async Task Join_reported_before_the_announce_reply_still_counts()
    {
        var pm = new FakePathManager();
        var reply = new TaskCompletionSource();
        pm.Announce = (_, _) => reply.Task;
        (UnicastAnnouncer announcer, MetricRecorder unusedMetrics) = Create(Settings(), pm);
        await using UnicastAnnouncer disposeAnnouncer = announcer;
        using LoopbackPair pair = await LoopbackPair.ConnectAsync();

        MptcpConnectionState state = announcer.OnAccepted(pair.Server, "c1");
        await Eventually.TrueAsync(() => !pm.Calls.IsEmpty, "announce sent");
        pm.Emit(new PathEvent(PathEventKind.SubflowEstablished, state.Token, new IPEndPoint(IPAddress.Parse("127.0.0.2"), 1), null));
        await Eventually.TrueAsync(() => state.State == UnicastSubflowState.Joined, "joined before the reply");
        reply.SetResult();
        await Eventually.TrueAsync(() => state.AnnouncedEndPoint is not null, "announced recorded");

        Assert.Equal(UnicastSubflowState.Joined, state.State);
    }

    [Fact]
    public async Task Events_for_other_tokens_and_other_addresses_are_ignored()
    {
        var pm = new FakePathManager();
        (UnicastAnnouncer announcer, MetricRecorder unusedMetrics) = Create(Settings(), pm);
        await using UnicastAnnouncer disposeAnnouncer = announcer;
        using LoopbackPair pair = await LoopbackPair.ConnectAsync();
        MptcpConnectionState state = announcer.OnAccepted(pair.Server, "c1");
        await Eventually.TrueAsync(() => state.State == UnicastSubflowState.Announced, "announced");

        pm.Emit(new PathEvent(PathEventKind.SubflowEstablished, state.Token + 1, new IPEndPoint(IPAddress.Parse("127.0.0.2"), 1), null));
        pm.Emit(new PathEvent(PathEventKind.SubflowEstablished, state.Token, new IPEndPoint(IPAddress.Parse("127.0.0.3"), 1), null));
        await Task.Delay(200);

        Assert.Equal(UnicastSubflowState.Announced, state.State);
        Assert.Single(pm.Calls); // no after-join command on anyone
    }

    [Fact]
    public async Task No_join_within_the_timeout_says_so_and_the_connection_stays_usable()
    {
        var pm = new FakePathManager();
        (UnicastAnnouncer announcer, MetricRecorder metrics) = Create(Settings(joinTimeout: TimeSpan.FromMilliseconds(200)), pm);
        await using UnicastAnnouncer disposeAnnouncer = announcer;
        using LoopbackPair pair = await LoopbackPair.ConnectAsync();

        MptcpConnectionState state = announcer.OnAccepted(pair.Server, "c1");
        await Eventually.TrueAsync(() => state.State == UnicastSubflowState.JoinTimedOut, "join timed out");

        Assert.Contains("did not open a subflow", state.StateReason);
        Assert.Equal(1, metrics["mptcp_anycast.join.timeouts"]);
        await pair.Client.SendAsync(new byte[] { 1 });
        Assert.Equal(1, await pair.Server.ReceiveAsync(new byte[1]));
    }

    [Fact]
    public async Task Transient_errors_are_retried_and_the_announcement_goes_through()
    {
        var pm = new FakePathManager();
        int attempts = 0;
        pm.Announce = (_, _) => Interlocked.Increment(ref attempts) < 3
            ? Task.FromException(new FakePathManagerException(PathManagerFailure.Transient))
            : Task.CompletedTask;
        (UnicastAnnouncer announcer, MetricRecorder unusedMetrics) = Create(Settings(), pm);
        await using UnicastAnnouncer disposeAnnouncer = announcer;
        using LoopbackPair pair = await LoopbackPair.ConnectAsync();

        MptcpConnectionState state = announcer.OnAccepted(pair.Server, "c1");
        await Eventually.TrueAsync(() => state.State == UnicastSubflowState.Announced, "announced after retries");

        Assert.Equal(3, attempts);
    }

    [Fact]
    public async Task Failed_announcement_leaves_a_working_single_path_connection_with_the_reason()
    {
        var pm = new FakePathManager { Announce = (_, _) => Task.FromException(new FakePathManagerException(PathManagerFailure.Systemic)) };
        (UnicastAnnouncer announcer, MetricRecorder metrics) = Create(Settings(), pm);
        await using UnicastAnnouncer disposeAnnouncer = announcer;
        using LoopbackPair pair = await LoopbackPair.ConnectAsync();

        MptcpConnectionState state = announcer.OnAccepted(pair.Server, "c1");
        await Eventually.TrueAsync(() => state.State == UnicastSubflowState.Failed, "failed");

        Assert.Contains("fake Systemic failure", state.StateReason);
        Assert.Equal(1, metrics["mptcp_anycast.announcements|failed"]);
        await pair.Client.SendAsync(new byte[] { 7 });
        Assert.Equal(1, await pair.Server.ReceiveAsync(new byte[1]));
    }

    [Fact]
    public async Task Path_manager_failing_for_everyone_opens_the_circuit_and_later_connections_skip_it()
    {
        int calls = 0;
        var pm = new FakePathManager
        {
            Announce = (_, _) =>
            {
                Interlocked.Increment(ref calls);
                return Task.FromException(new FakePathManagerException(PathManagerFailure.Systemic));
            },
        };
        (UnicastAnnouncer announcer, MetricRecorder unusedMetrics) = Create(Settings(), pm);
        await using UnicastAnnouncer disposeAnnouncer = announcer;

        var states = new List<MptcpConnectionState>();
        var pairs = new List<LoopbackPair>();
        for (int i = 0; i < 30; i++)
        {
            LoopbackPair pair = await LoopbackPair.ConnectAsync();
            pairs.Add(pair);
            MptcpConnectionState state = announcer.OnAccepted(pair.Server, $"c{i}");
            states.Add(state);
            await Eventually.TrueAsync(() => state.State == UnicastSubflowState.Failed, $"c{i} failed");
        }

        Assert.True(calls < 30, $"the path manager was called {calls} times; the circuit should have opened");
        Assert.Contains(states, s => s.StateReason.Contains("unavailable", StringComparison.Ordinal));
        pairs.ForEach(p => p.Dispose());
    }

    [Fact]
    public async Task Plain_tcp_connection_is_a_fallback_and_nothing_is_announced()
    {
        var pm = new FakePathManager();
        (UnicastAnnouncer announcer, MetricRecorder metrics) = Create(Settings(), pm);
        await using UnicastAnnouncer disposeAnnouncer = announcer;
        using LoopbackPair pair = await LoopbackPair.ConnectAsync(mptcpClient: false);

        MptcpConnectionState state = announcer.OnAccepted(pair.Server, "c1");

        Assert.False(state.IsMptcp);
        Assert.Equal(MptcpFallbackReason.PlainTcpSocket, state.FallbackReason);
        Assert.Equal(UnicastSubflowState.NotAnnounced, state.State);
        Assert.Contains("did not offer MPTCP", state.StateReason);
        Assert.Equal(0, announcer.TrackedConnections);
        Assert.Empty(pm.Calls);
        Assert.Equal(1, metrics["mptcp_anycast.fallbacks|plain_tcp"]);
    }

    [Fact]
    public async Task On_demand_announces_only_when_asked_and_only_once()
    {
        var pm = new FakePathManager();
        (UnicastAnnouncer announcer, MetricRecorder unusedMetrics) = Create(Settings(on: AnnounceOn.Demand), pm);
        await using UnicastAnnouncer disposeAnnouncer = announcer;
        using LoopbackPair pair = await LoopbackPair.ConnectAsync();

        MptcpConnectionState state = announcer.OnAccepted(pair.Server, "c1");
        await Task.Delay(100);
        Assert.Empty(pm.Calls);
        Assert.Equal(UnicastSubflowState.NotAnnounced, state.State);

        Assert.True(await state.AnnounceAsync());
        Assert.True(await state.AnnounceAsync());
        Assert.Single(pm.Calls);
        Assert.Equal(UnicastSubflowState.Announced, state.State);
    }

    [Fact]
    public async Task Lost_events_are_reconciled_from_the_socket()
    {
        var pm = new FakePathManager();
        (UnicastAnnouncer announcer, MetricRecorder metrics) = Create(Settings(), pm);
        await using UnicastAnnouncer disposeAnnouncer = announcer;
        using LoopbackPair pair = await LoopbackPair.ConnectAsync();
        MptcpConnectionState state = announcer.OnAccepted(pair.Server, "c1");
        await Eventually.TrueAsync(() => state.State == UnicastSubflowState.Announced, "announced");

        pm.Emit(new PathEvent(PathEventKind.EventsLost, 0, null, null));
        await Eventually.TrueAsync(() => metrics["mptcp_anycast.path_manager.events_lost"] == 1, "loss counted");

        // The socket has no unicast subflow (nobody joined on loopback), so reconciling keeps it Announced.
        Assert.Equal(UnicastSubflowState.Announced, state.State);
        Assert.Equal(1, announcer.Reconcile());
    }

    [Fact]
    public async Task Tracked_connections_gauge_rises_with_announced_connections_and_returns_to_zero_after_they_close()
    {
        const string Gauge = "mptcp_anycast.connections.tracked";
        var pm = new FakePathManager();
        (UnicastAnnouncer announcer, MetricRecorder metrics) = Create(Settings(), pm);
        await using UnicastAnnouncer disposeAnnouncer = announcer;
        Assert.Equal(0, metrics.Observe(Gauge));

        var pairs = new List<LoopbackPair>();
        try
        {
            var states = new List<MptcpConnectionState>();
            for (int i = 0; i < 3; i++)
            {
                LoopbackPair pair = await LoopbackPair.ConnectAsync();
                pairs.Add(pair);
                states.Add(announcer.OnAccepted(pair.Server, $"c{i}"));
                Assert.Equal(i + 1, metrics.Observe(Gauge));
            }

            LoopbackPair plain = await LoopbackPair.ConnectAsync(mptcpClient: false);
            pairs.Add(plain);
            announcer.OnAccepted(plain.Server, "plain");
            Assert.Equal(3, metrics.Observe(Gauge)); // plain TCP has nothing to track

            announcer.OnClosed(states[0]);
            announcer.OnClosed(states[1]);
            Assert.Equal(1, metrics.Observe(Gauge));
            pm.Emit(new PathEvent(PathEventKind.Closed, states[2].Token, null, null)); // the kernel's CLOSED event
            await Eventually.TrueAsync(() => metrics.Observe(Gauge) == 0, "back to 0");
        }
        finally
        {
            pairs.ForEach(p => p.Dispose());
        }
    }

    [Fact]
    public async Task Closed_connections_are_forgotten()
    {
        var pm = new FakePathManager();
        (UnicastAnnouncer announcer, MetricRecorder unusedMetrics) = Create(Settings(), pm);
        await using UnicastAnnouncer disposeAnnouncer = announcer;
        using LoopbackPair a = await LoopbackPair.ConnectAsync();
        using LoopbackPair b = await LoopbackPair.ConnectAsync();
        MptcpConnectionState sa = announcer.OnAccepted(a.Server, "a");
        MptcpConnectionState sb = announcer.OnAccepted(b.Server, "b");
        Assert.Equal(2, announcer.TrackedConnections);

        announcer.OnClosed(sa);
        pm.Emit(new PathEvent(PathEventKind.Closed, sb.Token, null, null));
        await Eventually.TrueAsync(() => announcer.TrackedConnections == 0, "both forgotten");
        Assert.True(sb.IsClosed);
    }
}

public sealed class UnicastAnnouncerRateLimitTests
{
    [Fact]
    public async Task Past_the_per_client_budget_connections_are_served_but_not_announced()
    {
        var pm = new FakePathManager();
        var meters = MetricRecorder.CreateFactory();
        using var metrics = new MetricRecorder(meters);
        MptcpAnycastSettings settings = MptcpAnycastSettings.Validate(new MptcpAnycastOptions
        {
            UnicastAddresses = ["127.0.0.2"],
            AnnouncementsPerClientPerMinute = 2,
        }, [IPAddress.Parse("127.0.0.2")]);
        await using var announcer = new UnicastAnnouncer(settings, AnnouncementMode.Userspace, pm, null, NullLogger.Instance,
            new MptcpAnycastMetrics(meters), TimeProvider.System);

        var pairs = new List<LoopbackPair>();
        var states = new List<MptcpConnectionState>();
        for (int i = 0; i < 4; i++)
        {
            LoopbackPair pair = await LoopbackPair.ConnectAsync();
            pairs.Add(pair);
            states.Add(announcer.OnAccepted(pair.Server, $"c{i}"));
        }

        await Eventually.TrueAsync(() => pm.Calls.Count == 2, "two announcements");
        await Task.Delay(100);
        Assert.Equal(2, pm.Calls.Count);
        Assert.Equal(2, states.Count(s => s.State == UnicastSubflowState.NotAnnounced));
        Assert.Contains("AnnouncementsPerClientPerMinute", states[3].StateReason);
        Assert.Equal(2, metrics["mptcp_anycast.announcements|rate_limited"]);
        pairs.ForEach(p => p.Dispose());
    }
}

[Collection(CircuitBreakDurationCollection.Name)]
public sealed class UnicastAnnouncerRecoveryTests
{
    [Fact]
    public async Task Announcements_resume_once_the_path_manager_works_again()
    {
        TimeSpan saved = UnicastAnnouncer.CircuitBreakDuration;
        UnicastAnnouncer.CircuitBreakDuration = TimeSpan.FromSeconds(1);
        try
        {
            bool broken = true;
            var pm = new FakePathManager
            {
                Announce = (_, _) => broken ? Task.FromException(new FakePathManagerException(PathManagerFailure.Systemic)) : Task.CompletedTask,
            };
            MptcpAnycastSettings settings = MptcpAnycastSettings.Validate(new MptcpAnycastOptions { UnicastAddresses = ["127.0.0.2"] }, [IPAddress.Parse("127.0.0.2")]);
            await using var announcer = new UnicastAnnouncer(settings, AnnouncementMode.Userspace, pm, null, NullLogger.Instance,
                new MptcpAnycastMetrics(MetricRecorder.CreateFactory()), TimeProvider.System);
            var pairs = new List<LoopbackPair>();
            try
            {
                for (int i = 0; i < 20; i++)
                {
                    LoopbackPair pair = await LoopbackPair.ConnectAsync();
                    pairs.Add(pair);
                    MptcpConnectionState s = announcer.OnAccepted(pair.Server, $"c{i}");
                    await Eventually.TrueAsync(() => s.State == UnicastSubflowState.Failed, $"c{i} failed");
                }

                broken = false; // the path manager comes back
                await Task.Delay(TimeSpan.FromSeconds(1.5)); // the circuit's pause ends

                LoopbackPair later = await LoopbackPair.ConnectAsync();
                pairs.Add(later);
                MptcpConnectionState recovered = announcer.OnAccepted(later.Server, "later");
                await Eventually.TrueAsync(() => recovered.State == UnicastSubflowState.Announced, "announced again after recovery");
            }
            finally
            {
                pairs.ForEach(p => p.Dispose());
            }
        }
        finally
        {
            UnicastAnnouncer.CircuitBreakDuration = saved;
        }
    }
}

[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class CircuitBreakDurationCollection
{
    public const string Name = "Circuit break duration (a static the test changes)";
}
