using Microsoft.Extensions.Diagnostics.HealthChecks;
using MptcpAnycast.Kestrel;
using MptcpAnycast.Kestrel.Health;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers the MPTCP anycast transport's health check.</summary>
public static class HealthChecksBuilderMptcpAnycastExtensions
{
    /// <summary>
    /// Adds a health check of the transport registered by <c>UseMptcpAnycast</c>:
    /// <c>builder.Services.AddHealthChecks().AddMptcpAnycast()</c>, then <c>app.MapHealthChecks("/healthz")</c>.
    /// It reports <paramref name="failureStatus"/> (default Unhealthy) when connections cannot survive a route change
    /// at all: the transport has not started, the host has no MPTCP, or announcements are off (the path manager cannot
    /// be used). It reports Degraded when announcements are paused (the path manager fails for everyone), the
    /// path-manager event subscription is lost, nothing is configured to announce, or the C flag is not set.
    /// The description says why; the data holds the mode, what is announced and the tracked connections.
    /// </summary>
    /// <param name="builder">The health checks builder.</param>
    /// <param name="name">The check's name. Default <c>mptcp_anycast</c>.</param>
    /// <param name="failureStatus">What to report when it fails. Default <see cref="HealthStatus.Unhealthy"/>.</param>
    /// <param name="tags">Tags to filter checks by (e.g. <c>ready</c>).</param>
    public static IHealthChecksBuilder AddMptcpAnycast(this IHealthChecksBuilder builder, string name = "mptcp_anycast",
        HealthStatus? failureStatus = null, IEnumerable<string>? tags = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentException.ThrowIfNullOrEmpty(name);
        return builder.Add(new HealthCheckRegistration(name,
            sp => new MptcpAnycastHealthCheck(sp.GetService<MptcpTransportFactory>()), failureStatus, tags));
    }
}
