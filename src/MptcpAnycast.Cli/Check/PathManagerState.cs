using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Cli.Check;

/// <summary>What the path manager reports for the host check: its limits and endpoints, or why they could not be read.</summary>
internal sealed record PathManagerState(MptcpLimits? Limits, IReadOnlyList<MptcpEndpoint> Endpoints, string? Error)
{
    public static PathManagerState Unreadable(string error) => new(null, [], error);

    /// <summary>Reads limits and endpoints in this process's namespace; never throws.</summary>
    public static async Task<PathManagerState> ReadAsync()
    {
        try
        {
            await using PathManagerClient pm = await PathManagerClient.OpenAsync().ConfigureAwait(false);
            pm.CommandTimeout = TimeSpan.FromSeconds(5);
            MptcpLimits limits = await pm.GetLimitsAsync().ConfigureAwait(false);
            IReadOnlyList<MptcpEndpoint> endpoints = await pm.GetEndpointsAsync().ConfigureAwait(false);
            return new PathManagerState(limits, endpoints, null);
        }
        catch (PathManagerException ex)
        {
            return Unreadable(ex.Message);
        }
    }
}
