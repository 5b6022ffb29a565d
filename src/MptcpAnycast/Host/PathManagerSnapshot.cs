using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Host;

/// <summary>What the in-kernel path manager reports for the host check: its limits and endpoints, or why they could not be read.</summary>
/// <param name="Limits">The namespace's limits, or null when unreadable.</param>
/// <param name="Endpoints">The namespace's endpoints.</param>
/// <param name="Error">Why they could not be read, or null.</param>
public sealed record PathManagerSnapshot(MptcpLimits? Limits, IReadOnlyList<MptcpEndpoint> Endpoints, string? Error)
{
    /// <summary>A snapshot that says why nothing could be read.</summary>
    public static PathManagerSnapshot Unreadable(string error) => new(null, [], error);

    /// <summary>Reads limits and endpoints in the calling thread's namespace (no privilege needed); never throws.</summary>
    public static PathManagerSnapshot Read()
    {
        try
        {
            using PathManagerClient pm = PathManagerClient.Open(new PathManagerClientOptions { CommandTimeout = TimeSpan.FromSeconds(5) });
            MptcpLimits limits = pm.GetLimitsAsync().GetAwaiter().GetResult();
            IReadOnlyList<MptcpEndpoint> endpoints = pm.GetEndpointsAsync().GetAwaiter().GetResult();
            return new PathManagerSnapshot(limits, endpoints, null);
        }
        catch (PathManagerException ex)
        {
            return Unreadable(ex.Message);
        }
    }
}
