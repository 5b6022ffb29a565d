using System.Net;
using MptcpAnycast.Kestrel.Control;

namespace MptcpAnycast.Kestrel.Connections;

/// <summary>
/// The <see cref="IMptcpConnectionFeature"/> of one connection: a view of its <see cref="TrackedConnection"/>, and the way
/// from the application to the control path (announce on demand, the close notification).
/// </summary>
internal sealed class MptcpConnectionFeature(TrackedConnection connection, ControlPath control) : IMptcpConnectionFeature
{
    public TrackedConnection Connection { get; } = connection;

    public bool IsMptcp => Connection.IsMptcp;

    public MptcpFallbackReason FallbackReason => Connection.FallbackReason;

    public uint Token => Connection.Token;

    public IPEndPoint? AnnouncedEndPoint
    {
        get
        {
            control.Refresh(Connection);
            return Connection.AnnouncedEndPoint;
        }
    }

    /// <summary>Waits for the control loop's decision right after accept, and reads the socket while the join is awaited (see <see cref="ControlPath.Refresh"/>).</summary>
    public UnicastSubflowState State
    {
        get
        {
            control.Refresh(Connection);
            return Connection.State;
        }
    }

    public string StateReason
    {
        get
        {
            control.Refresh(Connection);
            return Connection.StateReason;
        }
    }

    public DateTimeOffset AcceptedAt => Connection.AcceptedAt;

    public DateTimeOffset? AnnouncedAt
    {
        get
        {
            control.Refresh(Connection);
            return Connection.AnnouncedAt;
        }
    }

    public DateTimeOffset? JoinedAt
    {
        get
        {
            control.Refresh(Connection);
            return Connection.JoinedAt;
        }
    }

    public IReadOnlyList<MptcpSubflow> GetSubflows() => Connection.GetSubflows();

    public MptcpConnectionInfo GetConnectionInfo() => Connection.GetConnectionInfo();

    public ValueTask<bool> AnnounceAsync(CancellationToken cancellationToken = default) => control.AnnounceAsync(Connection, cancellationToken);

    /// <summary>Kestrel's <c>ConnectionClosed</c> callback.</summary>
    public void OnConnectionClosed() => control.OnClosed(Connection);
}
