using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace MptcpAnycast.Kestrel.Health;

/// <summary>
/// The transport's state as the health check sees it, read at the moment it is asked: what start-up found about the
/// host (<see cref="Hosting.HostPreparation"/>) and what the control path knows now (<see cref="Control.ControlPath"/>).
/// </summary>
internal sealed record TransportStatus
{
    /// <summary>Whether the transport has prepared the host and started its control path (at the first bind).</summary>
    public required bool Started { get; init; }

    /// <summary>The mode in effect (Auto resolved).</summary>
    public AnnouncementMode Mode { get; init; }

    /// <summary>Why the host serves plain TCP only (no MPTCP), or null.</summary>
    public string? MptcpProblem { get; init; }

    /// <summary>Why no announcement can be made (no path manager, no event subscription in Userspace mode), or null.</summary>
    public string? AnnouncementsOff { get; init; }

    /// <summary>The path manager failed for everyone and announcements are paused (the circuit is open).</summary>
    public bool AnnouncementsPaused { get; init; }

    /// <summary>There is a path manager whose events the transport should follow.</summary>
    public bool ExpectsEvents { get; init; }

    /// <summary>The transport hears the path manager's events now.</summary>
    public bool FollowingEvents { get; init; }

    /// <summary>Announcing was asked for, but no unicast address is configured (or <c>auto</c> found none).</summary>
    public bool NothingToAnnounce { get; init; }

    /// <summary>What start-up warned about and serves on with (the C flag), or null.</summary>
    public string? HostWarning { get; init; }

    /// <summary>What is announced, as the start-up log says it.</summary>
    public string Announcing { get; init; } = "nothing";

    public int TrackedConnections { get; init; }

    /// <summary>
    /// The worst of what is wrong, with every reason: <paramref name="failureStatus"/> when connections cannot
    /// survive a route change at all (not started, no MPTCP, announcements off); Degraded when they can but less
    /// (announcements paused, event subscription lost, nothing configured to announce, the C flag not set).
    /// </summary>
    public HealthCheckResult ToHealthCheckResult(HealthStatus failureStatus)
    {
        var data = new Dictionary<string, object>
        {
            ["started"] = Started,
            ["mode"] = Mode.ToString(),
            ["announcing"] = Announcing,
            ["following_events"] = FollowingEvents,
            ["announcements_paused"] = AnnouncementsPaused,
            ["tracked_connections"] = TrackedConnections,
        };
        if (!Started)
        {
            return new HealthCheckResult(failureStatus,
                "the MPTCP anycast transport has not started: no IP endpoint is bound yet (the host is starting, or Kestrel serves none)", data: data);
        }

        var failures = new List<string>();
        var degraded = new List<string>();
        if (MptcpProblem is not null)
        {
            failures.Add($"MPTCP is not available, serving plain TCP: {MptcpProblem}");
        }

        if (AnnouncementsOff is not null)
        {
            failures.Add($"announcements are off: {AnnouncementsOff}");
        }

        if (AnnouncementsPaused)
        {
            degraded.Add("announcements are paused: the path manager fails for every connection (circuit open); new connections stay single-path until it recovers");
        }

        if (ExpectsEvents && !FollowingEvents)
        {
            degraded.Add(Mode == AnnouncementMode.Userspace
                ? "the path-manager event subscription is lost: the kernel resets joins until it is back, and join state is read from the sockets"
                : "the path-manager event subscription is lost or could not be made: join state is read from the sockets instead");
        }

        if (NothingToAnnounce)
        {
            degraded.Add("nothing is announced: set MptcpAnycast:UnicastAddresses:0 to this server's own address (e.g. 192.0.2.10), or Mode = None");
        }

        if (HostWarning is not null)
        {
            degraded.Add(HostWarning);
        }

        if (failures.Count > 0)
        {
            return new HealthCheckResult(failureStatus, string.Join("; ", failures.Concat(degraded)), data: data);
        }

        if (degraded.Count > 0)
        {
            // Degraded, unless the registration's failure status is milder still (Healthy: never fail).
            HealthStatus status = failureStatus > HealthStatus.Degraded ? failureStatus : HealthStatus.Degraded;
            return new HealthCheckResult(status, string.Join("; ", degraded), data: data);
        }

        return HealthCheckResult.Healthy($"mode {Mode}, announcing {Announcing}", data);
    }
}
