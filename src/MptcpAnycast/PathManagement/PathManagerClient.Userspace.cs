using System.Net;
using static MptcpAnycast.Interop.MptcpPmConstants;

namespace MptcpAnycast.PathManagement;

/// <summary>Per-connection commands of the userspace path manager (<c>net.mptcp.path_manager = userspace</c>).</summary>
public sealed partial class PathManagerClient
{
    /// <summary>
    /// Userspace PM: announces <paramref name="address"/> to the peer of connection <paramref name="token"/> with
    /// ADD_ADDR (ANNOUNCE). Port 0 announces no port (the peer joins on the connection's port). Something must listen
    /// on the announced address and port: the userspace path manager does not create listeners.
    /// </summary>
    /// <param name="token">The connection token (<see cref="MptcpConnectionInfo.Token"/> of the server socket).</param>
    /// <param name="addressId">The address id, 1 to 255 (0 is the initial subflow's and refused).</param>
    /// <param name="address">The address and optional port to announce.</param>
    /// <param name="cancellationToken">Looked at before the command is sent (see the remarks on the class).</param>
    /// <exception cref="PathManagerException">The kernel refused, e.g. "invalid token" or "invalid addr id or flags".</exception>
    public Task AnnounceAsync(uint token, byte addressId, IPEndPoint address, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(address);
        HoldEventSubscription();
        return RunAsync("ANNOUNCE", (token, addressId, address),
            static (b, f, s, st) => MptcpPmMessages.WriteAnnounce(b, f, s, st.token, st.addressId, st.address.Address, st.address.Port),
            cancellationToken);
    }

    /// <summary>Userspace PM: withdraws announced address <paramref name="addressId"/> (REMOVE, RM_ADDR to the peer) and closes its subflows.</summary>
    public Task RemoveAsync(uint token, byte addressId, CancellationToken cancellationToken = default)
    {
        HoldEventSubscription();
        return RunAsync("REMOVE", (token, addressId),
            static (b, f, s, st) => MptcpPmMessages.WriteRemove(b, f, s, st.token, st.addressId), cancellationToken);
    }

    /// <summary>Userspace PM: opens a subflow from <paramref name="local"/> (address id <paramref name="localId"/>) to <paramref name="remote"/> (SUBFLOW_CREATE).</summary>
    public Task CreateSubflowAsync(uint token, byte localId, IPEndPoint local, IPEndPoint remote, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(local);
        ArgumentNullException.ThrowIfNull(remote);
        HoldEventSubscription();
        return RunAsync("SUBFLOW_CREATE", (token, localId, local, remote),
            static (b, f, s, st) => MptcpPmMessages.WriteSubflowCommand(b, f, MPTCP_PM_CMD_SUBFLOW_CREATE, s, st.token, st.local, st.localId, null, st.remote),
            cancellationToken);
    }

    /// <summary>Userspace PM: closes the subflow between <paramref name="local"/> and <paramref name="remote"/> (SUBFLOW_DESTROY); both ports are needed.</summary>
    public Task DestroySubflowAsync(uint token, IPEndPoint local, IPEndPoint remote, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(local);
        ArgumentNullException.ThrowIfNull(remote);
        HoldEventSubscription();
        return RunAsync("SUBFLOW_DESTROY", (token, local, remote),
            static (b, f, s, st) => MptcpPmMessages.WriteSubflowCommand(b, f, MPTCP_PM_CMD_SUBFLOW_DESTROY, s, st.token, st.local, null, null, st.remote),
            cancellationToken);
    }

    /// <summary>
    /// Userspace PM: marks the subflow between <paramref name="local"/> and <paramref name="remote"/> as backup or not
    /// (SET_FLAGS; the kernel sends MP_PRIO). Both ports are needed.
    /// </summary>
    public Task SetSubflowBackupAsync(uint token, IPEndPoint local, IPEndPoint remote, bool backup, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(local);
        ArgumentNullException.ThrowIfNull(remote);
        HoldEventSubscription();
        return RunAsync("SET_FLAGS", (token, local, remote, flags: backup ? MPTCP_PM_ADDR_FLAG_BACKUP : 0u),
            static (b, f, s, st) => MptcpPmMessages.WriteSubflowCommand(b, f, MPTCP_PM_CMD_SET_FLAGS, s, st.token, st.local, null, st.flags, st.remote),
            cancellationToken);
    }
}
