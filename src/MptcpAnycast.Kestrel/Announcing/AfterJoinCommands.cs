using Microsoft.Extensions.Logging;
using MptcpAnycast.Kestrel.Connections;
using MptcpAnycast.Kestrel.Control;
using MptcpAnycast.Kestrel.Diagnostics;
using MptcpAnycast.PathManagement;
using Polly.CircuitBreaker;

namespace MptcpAnycast.Kestrel.Announcing;

/// <summary>
/// The after-join policy: once the client's unicast subflow is up, mark the anycast subflow as backup
/// (<see cref="AfterJoinPolicy.PreferUnicast"/>) or close it (<see cref="AfterJoinPolicy.MigrateToUnicast"/>). Per-connection
/// subflow commands exist only in the userspace path manager. Runs on the control loop.
/// </summary>
internal sealed class AfterJoinCommands(AfterJoinPolicy policy, IPathManager pathManager, ControlPlanePipeline pipeline, ILogger logger)
{
    /// <summary>Whether <paramref name="policy"/> in <paramref name="mode"/> sends a command after a join.</summary>
    public static bool IsNeeded(AfterJoinPolicy policy, AnnouncementMode mode) => policy != AfterJoinPolicy.KeepBoth && mode == AnnouncementMode.Userspace;

    public void Run(TrackedConnection connection)
    {
        if (connection.IsClosed || connection.Local is not { } local || connection.Remote is not { } remote)
        {
            return;
        }

        try
        {
            pipeline.Execute(static s =>
            {
                if (s.Policy == AfterJoinPolicy.PreferUnicast)
                {
                    s.PathManager.SetBackup(s.Token, s.Local, s.Remote, backup: true);
                }
                else
                {
                    s.PathManager.DestroySubflow(s.Token, s.Local, s.Remote);
                }
            }, (Policy: policy, PathManager: pathManager, connection.Token, Local: local, Remote: remote));
        }
        catch (Exception ex) when (ex is PathManagerException or BrokenCircuitException or ObjectDisposedException)
        {
            if (!connection.IsClosed)
            {
                MptcpAnycastLog.AfterJoinFailed(logger, connection.ConnectionId, policy, local, remote, ex);
            }
        }
    }
}
