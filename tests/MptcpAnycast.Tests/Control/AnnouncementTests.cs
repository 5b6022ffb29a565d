using System.Net;
using MptcpAnycast.Interop;
using MptcpAnycast.Kestrel;
using MptcpAnycast.Kestrel.Connections;
using MptcpAnycast.Kestrel.Control;

namespace MptcpAnycast.Tests.Control;

/// <summary>
/// What the control path announces and when, against real loopback MPTCP sockets and a fake path manager; how it
/// behaves when the path manager fails; that nothing of it runs where the connection is accepted.
/// </summary>
public sealed class AnnouncementTests
{
    [Fact]
    public async Task Accepted_mptcp_connection_is_announced_with_its_own_token_and_joins_on_the_event()
    {
        await using ControlPathHarness h = new ControlPathHarness().Start();
        MptcpConnectionFeature feature = await h.AcceptAsync();
        TrackedConnection c = feature.Connection;
        await Eventually.TrueAsync(() => c.State == UnicastSubflowState.Announced, "announced");

        uint token = MptcpSocket.GetConnectionInfo(c.Socket!).Token;
        Assert.Equal(token, feature.Token);
        int port = c.Local!.Port;
        Assert.Equal($"announce {token:x8} 1 127.0.0.2:0", Assert.Single(h.PathManager.Calls)); // the connection's own port: no port field
        Assert.Equal(new IPEndPoint(ControlPathHarness.UnicastAddress, port), feature.AnnouncedEndPoint);

        h.JoinWithEvent(c);
        Assert.Equal(UnicastSubflowState.Joined, c.State); // handled on the "event thread" (here: this one) at once
        await Eventually.TrueAsync(() => h.PathManager.Calls.Count == 2, "after-join command");

        Assert.StartsWith($"backup {token:x8} 127.0.0.1:{port} 127.0.0.1:{c.Remote!.Port} True", h.PathManager.Calls.Last());
        Assert.NotNull(feature.JoinedAt);
        Assert.Equal(1, h.Metrics["mptcp_anycast.joins"]);
        Assert.Equal(1, h.Metrics["mptcp_anycast.announcements|sent"]);
        Assert.Equal(1, h.Metrics["mptcp_anycast.connections|mptcp"]);
    }

    [Fact]
    public async Task Accepting_never_waits_for_the_path_manager()
    {
        // The control loop is stuck inside an ANNOUNCE; connections are still accepted, each in no time.
        using var release = new ManualResetEventSlim();
        await using ControlPathHarness h = new ControlPathHarness().Start();
        h.PathManager.Announce = (_, _) => release.Wait(TimeSpan.FromSeconds(10));
        MptcpConnectionFeature first = await h.AcceptAsync();
        await Eventually.TrueAsync(() => !h.PathManager.Calls.IsEmpty, "the first ANNOUNCE is in the kernel");

        var accepted = new List<MptcpConnectionFeature>();
        for (int i = 0; i < 5; i++)
        {
            accepted.Add(await h.AcceptAsync());
        }

        Assert.All(accepted, f => Assert.Equal(UnicastSubflowState.NotAnnounced, f.Connection.State));
        Assert.Single(h.PathManager.Calls);

        release.Set();
        await Eventually.TrueAsync(() => accepted.All(f => f.Connection.State == UnicastSubflowState.Announced), "all announced once the loop is free");
        Assert.Equal(UnicastSubflowState.Announced, first.Connection.State);
    }

    [Fact]
    public async Task The_first_look_at_a_connection_waits_for_the_control_loops_decision()
    {
        await using ControlPathHarness h = new ControlPathHarness(withPathManager: false).Start();
        MptcpConnectionFeature feature = await h.AcceptAsync();

        Assert.Equal(UnicastSubflowState.Failed, feature.State); // not "queued": decided before the answer
        Assert.Contains("no path manager in this test", feature.StateReason);
    }

    [Fact]
    public async Task While_the_control_loop_is_held_up_the_first_look_waits_a_bounded_time_and_says_why()
    {
        using var release = new ManualResetEventSlim();
        await using ControlPathHarness h = new ControlPathHarness().Start();
        h.PathManager.Announce = (_, _) => release.Wait(TimeSpan.FromSeconds(10));
        await h.AcceptAsync();
        await Eventually.TrueAsync(() => !h.PathManager.Calls.IsEmpty, "the control loop is inside an ANNOUNCE");
        MptcpConnectionFeature queued = await h.AcceptAsync();

        var clock = System.Diagnostics.Stopwatch.StartNew();
        UnicastSubflowState state = queued.State;
        TimeSpan waited = clock.Elapsed;
        string reason = queued.Connection.StateReason;
        release.Set();

        Assert.Equal(UnicastSubflowState.NotAnnounced, state);
        Assert.Contains("queued", reason);
        Assert.InRange(waited, ControlPath.DecisionWait * 0.9, TimeSpan.FromSeconds(2));
        await Eventually.TrueAsync(() => queued.State == UnicastSubflowState.Announced, "announced once the loop is free");
    }

    [Fact]
    public async Task Join_reported_before_the_announce_reply_still_counts()
    {
        using var reply = new ManualResetEventSlim();
        await using ControlPathHarness h = new ControlPathHarness().Start();
        h.PathManager.Announce = (_, _) => reply.Wait(TimeSpan.FromSeconds(10));
        MptcpConnectionFeature feature = await h.AcceptAsync();
        await Eventually.TrueAsync(() => !h.PathManager.Calls.IsEmpty, "announce sent");

        h.JoinWithEvent(feature.Connection);
        Assert.Equal(UnicastSubflowState.Joined, feature.Connection.State);
        reply.Set();
        await Eventually.TrueAsync(() => feature.AnnouncedEndPoint is not null, "announced recorded");

        Assert.Equal(UnicastSubflowState.Joined, feature.State);
    }

    [Fact]
    public async Task Events_for_other_tokens_and_other_addresses_are_ignored()
    {
        await using ControlPathHarness h = new ControlPathHarness().Start();
        MptcpConnectionFeature feature = await h.AcceptAsync();
        TrackedConnection c = feature.Connection;
        await Eventually.TrueAsync(() => c.State == UnicastSubflowState.Announced, "announced");

        h.PathManager.EmitJoin(c.Token + 1, new IPEndPoint(ControlPathHarness.UnicastAddress, 1));
        h.PathManager.EmitJoin(c.Token, IPEndPoint.Parse("127.0.0.3:1"));
        await Task.Delay(100);

        Assert.Equal(UnicastSubflowState.Announced, c.State);
        Assert.Single(h.PathManager.Calls); // no after-join command on anyone
    }

    [Fact]
    public async Task No_join_within_the_timeout_says_so_and_the_connection_stays_usable()
    {
        await using ControlPathHarness h = new ControlPathHarness(new MptcpAnycastOptions { JoinTimeout = TimeSpan.FromMilliseconds(200) }).Start();
        MptcpConnectionFeature feature = await h.AcceptAsync();

        await Eventually.TrueAsync(() => feature.State == UnicastSubflowState.JoinTimedOut, "join timed out");

        Assert.Contains("did not open a subflow", feature.StateReason);
        // The control thread counts the timeout just after it sets the state.
        await Eventually.TrueAsync(() => h.Metrics["mptcp_anycast.join.timeouts"] >= 1, "the timeout counted");
        Assert.Equal(1, h.Metrics["mptcp_anycast.join.timeouts"]);
        Assert.Equal(1, await feature.Connection.Socket!.SendAsync(new byte[] { 1 }).WithTimeout());
    }

    [Fact]
    public async Task Transient_errors_are_retried_and_the_announcement_goes_through()
    {
        await using ControlPathHarness h = new ControlPathHarness().Start();
        int attempts = 0;
        h.PathManager.Announce = (_, _) =>
        {
            if (Interlocked.Increment(ref attempts) < 3)
            {
                throw FakePathManager.Failure(Errno.ENOBUFS);
            }
        };

        MptcpConnectionFeature feature = await h.AcceptAsync();
        await Eventually.TrueAsync(() => feature.State == UnicastSubflowState.Announced, "announced after retries");

        Assert.Equal(3, attempts);
    }

    [Fact]
    public async Task Failed_announcement_leaves_a_working_single_path_connection_with_the_reason()
    {
        await using ControlPathHarness h = new ControlPathHarness().Start();
        h.PathManager.Announce = (_, _) => throw FakePathManager.Failure(Errno.EPERM);

        MptcpConnectionFeature feature = await h.AcceptAsync();
        await Eventually.TrueAsync(() => feature.State == UnicastSubflowState.Failed, "failed");

        Assert.Contains("fake kernel refusal", feature.StateReason);
        Assert.Equal(1, h.Metrics["mptcp_anycast.announcements|failed"]);
        Assert.Equal(1, h.Logger.Count(6)); // AnnounceFailed
        Assert.Equal(1, await feature.Connection.Socket!.SendAsync(new byte[] { 7 }).WithTimeout());
    }

    [Fact]
    public async Task A_connection_gone_before_its_announcement_fails_quietly()
    {
        await using ControlPathHarness h = new ControlPathHarness().Start();
        h.PathManager.Announce = (_, _) => throw FakePathManager.Failure(Errno.EINVAL); // "invalid token"

        MptcpConnectionFeature feature = await h.AcceptAsync();
        await Eventually.TrueAsync(() => feature.State == UnicastSubflowState.Failed, "failed");

        Assert.Contains("gone before the announcement", feature.StateReason);
        Assert.Equal(0, h.Logger.Count(6));
    }

    [Fact]
    public async Task Path_manager_failing_for_everyone_opens_the_circuit_and_later_connections_skip_it()
    {
        await using ControlPathHarness h = new ControlPathHarness().Start();
        int calls = 0;
        h.PathManager.Announce = (_, _) =>
        {
            Interlocked.Increment(ref calls);
            throw FakePathManager.Failure(Errno.EPERM);
        };

        var features = new List<MptcpConnectionFeature>();
        for (int i = 0; i < 30; i++)
        {
            MptcpConnectionFeature feature = await h.AcceptAsync();
            features.Add(feature);
            await Eventually.TrueAsync(() => feature.Connection.State == UnicastSubflowState.Failed, $"connection {i} failed");
        }

        Assert.True(calls < 30, $"the path manager was called {calls} times; the circuit should have opened");
        Assert.Contains(features, f => f.StateReason.Contains("unavailable", StringComparison.Ordinal));
        Assert.Equal(1, h.Logger.Count(9)); // PathManagerUnavailable: once, when the circuit opened
        Assert.True(h.Control.IsAnnouncementPaused); // what the health check reports as Degraded
    }

    [Fact]
    public async Task Announcements_resume_once_the_path_manager_works_again()
    {
        await using ControlPathHarness h = new ControlPathHarness(tuning: new ControlPathTuning { CircuitBreakDuration = TimeSpan.FromSeconds(1) }).Start();
        bool broken = true;
        h.PathManager.Announce = (_, _) =>
        {
            if (broken)
            {
                throw FakePathManager.Failure(Errno.EPERM);
            }
        };
        for (int i = 0; i < 20; i++)
        {
            MptcpConnectionFeature failing = await h.AcceptAsync();
            await Eventually.TrueAsync(() => failing.Connection.State == UnicastSubflowState.Failed, $"connection {i} failed");
        }

        Assert.True(h.Control.IsAnnouncementPaused);
        broken = false; // the path manager comes back
        await Task.Delay(TimeSpan.FromSeconds(1.5)); // the circuit's pause ends

        MptcpConnectionFeature recovered = await h.AcceptAsync();
        await Eventually.TrueAsync(() => recovered.Connection.State == UnicastSubflowState.Announced, "announced again after recovery");
        Assert.Equal(1, h.Logger.Count(10)); // PathManagerRecovered
        Assert.False(h.Control.IsAnnouncementPaused);
    }

    [Fact]
    public async Task Without_a_path_manager_the_connection_is_served_single_path_with_the_reason()
    {
        await using ControlPathHarness h = new ControlPathHarness(withPathManager: false).Start();
        MptcpConnectionFeature feature = await h.AcceptAsync();

        await Eventually.TrueAsync(() => feature.State == UnicastSubflowState.Failed, "failed");
        Assert.Contains("no path manager in this test", feature.StateReason);
    }

    [Fact]
    public async Task Plain_tcp_connection_is_a_fallback_and_nothing_is_announced()
    {
        await using ControlPathHarness h = new ControlPathHarness().Start();
        MptcpConnectionFeature feature = await h.AcceptAsync(mptcpClient: false);
        await Eventually.TrueAsync(() => h.Metrics["mptcp_anycast.fallbacks|plain_tcp"] == 1, "counted as a fallback");

        Assert.False(feature.IsMptcp);
        Assert.Equal(MptcpFallbackReason.PlainTcpSocket, feature.FallbackReason);
        Assert.Equal(UnicastSubflowState.NotAnnounced, feature.State);
        Assert.Contains("did not offer MPTCP", feature.StateReason);
        Assert.Equal(0, h.Control.TrackedConnections);
        Assert.Empty(h.PathManager.Calls);
    }

    [Fact]
    public async Task On_demand_announces_only_when_asked_and_only_once()
    {
        await using ControlPathHarness h = new ControlPathHarness(new MptcpAnycastOptions { AnnounceOn = AnnounceOn.Demand }).Start();
        MptcpConnectionFeature feature = await h.AcceptAsync();
        await Eventually.TrueAsync(() => feature.StateReason.Contains("on demand", StringComparison.Ordinal), "looked at");
        Assert.Empty(h.PathManager.Calls);
        Assert.Equal(UnicastSubflowState.NotAnnounced, feature.State);

        Assert.True(await feature.AnnounceAsync().WithTimeout());
        Assert.True(await feature.AnnounceAsync().WithTimeout());
        Assert.Single(h.PathManager.Calls);
        Assert.Equal(UnicastSubflowState.Announced, feature.State);
    }

    [Fact]
    public async Task On_demand_for_a_plain_tcp_connection_says_no()
    {
        await using ControlPathHarness h = new ControlPathHarness(new MptcpAnycastOptions { AnnounceOn = AnnounceOn.Demand }).Start();
        MptcpConnectionFeature feature = await h.AcceptAsync(mptcpClient: false);

        Assert.False(await feature.AnnounceAsync().WithTimeout());
        Assert.Empty(h.PathManager.Calls);
    }

    [Fact]
    public async Task Past_the_per_client_budget_connections_are_served_but_not_announced()
    {
        await using ControlPathHarness h = new ControlPathHarness(new MptcpAnycastOptions { AnnouncementsPerClientPerMinute = 2 }).Start();
        var features = new List<MptcpConnectionFeature>();
        for (int i = 0; i < 4; i++)
        {
            features.Add(await h.AcceptAsync());
        }

        await Eventually.TrueAsync(() => h.Metrics["mptcp_anycast.announcements|rate_limited"] == 2, "two turned down");
        Assert.Equal(2, h.PathManager.Calls.Count);
        Assert.Equal(2, features.Count(f => f.State == UnicastSubflowState.NotAnnounced));
        Assert.Contains("AnnouncementsPerClientPerMinute", features[3].StateReason);
    }
}
