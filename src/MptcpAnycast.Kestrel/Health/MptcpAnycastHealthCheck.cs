using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace MptcpAnycast.Kestrel.Health;

/// <summary>Reports the transport's <see cref="TransportStatus"/>; registered by <c>AddMptcpAnycast</c>.</summary>
internal sealed class MptcpAnycastHealthCheck(MptcpTransportFactory? factory) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        HealthStatus failureStatus = context.Registration?.FailureStatus ?? HealthStatus.Unhealthy;
        if (factory is null)
        {
            return Task.FromResult(new HealthCheckResult(failureStatus,
                "the MPTCP anycast transport is not registered: call builder.WebHost.UseMptcpAnycast()"));
        }

        return Task.FromResult(factory.GetStatus().ToHealthCheckResult(failureStatus));
    }
}
