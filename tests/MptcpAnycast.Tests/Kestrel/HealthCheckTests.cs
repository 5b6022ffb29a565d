using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging.Abstractions;
using MptcpAnycast.Interop;
using MptcpAnycast.Kestrel;
using MptcpAnycast.Kestrel.Health;
using MptcpAnycast.Kestrel.Hosting;
using MptcpAnycast.Tests.Control;

namespace MptcpAnycast.Tests.Kestrel;

/// <summary>The health check <c>AddHealthChecks().AddMptcpAnycast()</c> registers: each state the transport can be in, and its reason.</summary>
public sealed class HealthCheckTests
{
    private static readonly TransportStatus Running = new()
    {
        Started = true,
        Mode = AnnouncementMode.Userspace,
        ExpectsEvents = true,
        FollowingEvents = true,
        Announcing = "192.0.2.10 (on the port of each connection)",
        TrackedConnections = 3,
    };

    [Fact]
    public void A_running_transport_is_healthy_and_says_what_it_announces()
    {
        HealthCheckResult result = Running.ToHealthCheckResult(HealthStatus.Unhealthy);

        Assert.Equal(HealthStatus.Healthy, result.Status);
        Assert.Equal("mode Userspace, announcing 192.0.2.10 (on the port of each connection)", result.Description);
        Assert.Equal(3, result.Data["tracked_connections"]);
        Assert.Equal("Userspace", result.Data["mode"]);
    }

    [Fact]
    public void Not_started_is_the_failure_status()
    {
        HealthCheckResult result = new TransportStatus { Started = false }.ToHealthCheckResult(HealthStatus.Unhealthy);

        Assert.Equal(HealthStatus.Unhealthy, result.Status);
        Assert.Contains("has not started", result.Description);
    }

    [Fact]
    public void A_host_without_mptcp_is_the_failure_status_with_the_reason()
    {
        HealthCheckResult result = (Running with { Mode = AnnouncementMode.None, MptcpProblem = "net.mptcp.enabled = 0", ExpectsEvents = false })
            .ToHealthCheckResult(HealthStatus.Unhealthy);

        Assert.Equal(HealthStatus.Unhealthy, result.Status);
        Assert.Equal("MPTCP is not available, serving plain TCP: net.mptcp.enabled = 0", result.Description);
    }

    [Fact]
    public void Announcements_off_is_the_failure_status_with_the_reason()
    {
        HealthCheckResult result = (Running with { AnnouncementsOff = "no CAP_NET_ADMIN", ExpectsEvents = false })
            .ToHealthCheckResult(HealthStatus.Unhealthy);

        Assert.Equal(HealthStatus.Unhealthy, result.Status);
        Assert.Equal("announcements are off: no CAP_NET_ADMIN", result.Description);
    }

    [Fact]
    public void Paused_announcements_are_degraded()
    {
        HealthCheckResult result = (Running with { AnnouncementsPaused = true }).ToHealthCheckResult(HealthStatus.Unhealthy);

        Assert.Equal(HealthStatus.Degraded, result.Status);
        Assert.StartsWith("announcements are paused", result.Description, StringComparison.Ordinal);
        Assert.Equal(true, result.Data["announcements_paused"]);
    }

    [Fact]
    public void A_lost_event_subscription_is_degraded()
    {
        HealthCheckResult result = (Running with { FollowingEvents = false }).ToHealthCheckResult(HealthStatus.Unhealthy);

        Assert.Equal(HealthStatus.Degraded, result.Status);
        Assert.Contains("event subscription is lost", result.Description);
    }

    [Fact]
    public void Nothing_to_announce_and_the_c_flag_are_degraded_and_both_said()
    {
        HealthCheckResult result = (Running with { NothingToAnnounce = true, HostWarning = "net.mptcp.allow_join_initial_addr_port = 1: fix it" })
            .ToHealthCheckResult(HealthStatus.Unhealthy);

        Assert.Equal(HealthStatus.Degraded, result.Status);
        Assert.Contains("set MptcpAnycast:UnicastAddresses:0", result.Description);
        Assert.Contains("allow_join_initial_addr_port = 1", result.Description);
    }

    [Fact]
    public void A_failure_beats_a_degradation_and_the_registrations_failure_status_is_used()
    {
        HealthCheckResult result = (Running with { AnnouncementsOff = "no path manager", AnnouncementsPaused = true })
            .ToHealthCheckResult(HealthStatus.Degraded);

        Assert.Equal(HealthStatus.Degraded, result.Status);
        Assert.StartsWith("announcements are off: no path manager; announcements are paused", result.Description, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Without_UseMptcpAnycast_the_check_says_what_to_call()
    {
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddHealthChecks().AddMptcpAnycast();
        await using ServiceProvider provider = services.BuildServiceProvider();

        HealthReport report = await provider.GetRequiredService<HealthCheckService>().CheckHealthAsync().WaitAsync(TaskTimeoutExtensions.Within());

        HealthReportEntry entry = report.Entries["mptcp_anycast"];
        Assert.Equal(HealthStatus.Unhealthy, entry.Status);
        Assert.Contains("UseMptcpAnycast()", entry.Description);
    }

    [Fact]
    public async Task The_factorys_status_follows_start_and_the_event_subscription()
    {
        var pathManager = new FakePathManager();
        var options = new MptcpAnycastOptions();
        options.UnicastAddresses.Add("127.0.0.2");
        MptcpAnycastSettings settings = MptcpAnycastSettings.Validate(options, [ControlPathHarness.UnicastAddress]);
        await using var factory = new MptcpTransportFactory(settings, new SocketTransportOptions(), NullLoggerFactory.Instance, MetricRecorder.CreateFactory(),
            TimeProvider.System, _ => Task.FromResult(new HostPreparation { Mode = AnnouncementMode.Userspace, MptcpSupported = true, PathManager = pathManager }));
        var check = new MptcpAnycastHealthCheck(factory);
        var context = new HealthCheckContext
        {
            Registration = new HealthCheckRegistration("mptcp_anycast", check, HealthStatus.Unhealthy, null),
        };

        Assert.Equal(HealthStatus.Unhealthy, (await check.CheckHealthAsync(context)).Status); // nothing bound yet

        IConnectionListener listener = await factory.BindAsync(new IPEndPoint(IPAddress.Loopback, 0)).AsTask().WaitAsync(TaskTimeoutExtensions.Within());
        await using (listener)
        {
            HealthCheckResult started = await check.CheckHealthAsync(context);
            Assert.Equal(HealthStatus.Healthy, started.Status);
            Assert.Equal("mode Userspace, announcing 127.0.0.2 (on the port of each connection)", started.Description);

            pathManager.FailEvents(FakePathManager.Failure(Errno.EBADF, "receive mptcp_pm_events"));
            pathManager.Subscribe = static () => false;
            await Eventually.TrueAsync(() => factory.GetStatus() is { FollowingEvents: false }, "the subscription seen lost");
            HealthCheckResult lost = await check.CheckHealthAsync(context);
            Assert.Equal(HealthStatus.Degraded, lost.Status);
            Assert.Contains("event subscription is lost", lost.Description);

            pathManager.Subscribe = static () => true;
            await Eventually.TrueAsync(() => factory.GetStatus() is { FollowingEvents: true }, "subscribed again", TimeSpan.FromSeconds(10));
            Assert.Equal(HealthStatus.Healthy, (await check.CheckHealthAsync(context)).Status);
        }
    }
}
