using System.Globalization;
using System.Net;
using MptcpAnycast.Interop;
using static MptcpAnycast.Interop.MptcpPmConstants;

namespace MptcpAnycast.PathManagement;

/// <summary>The in-kernel path manager's endpoints and limits (<c>ip mptcp endpoint</c>, <c>ip mptcp limits</c>).</summary>
public sealed partial class PathManagerClient
{
    /// <summary>In-kernel PM: every endpoint of the namespace (GET_ADDR dump), as <c>ip mptcp endpoint show</c>.</summary>
    public async Task<IReadOnlyList<MptcpEndpoint>> GetEndpointsAsync(CancellationToken cancellationToken = default)
    {
        List<byte[]> replies = await RunAsync("GET_ADDR", 0,
            static (b, f, s, _) => MptcpPmMessages.WriteBare(b, f, MPTCP_PM_CMD_GET_ADDR, s, dump: true), cancellationToken).ConfigureAwait(false);
        return Decode("GET_ADDR", replies, static p => MptcpPmMessages.ReadEndpoint(p));
    }

    /// <summary>In-kernel PM: the endpoint with id <paramref name="id"/> (GET_ADDR).</summary>
    /// <exception cref="PathManagerException">No such endpoint (the kernel says "address not found"), or another failure.</exception>
    public async Task<MptcpEndpoint> GetEndpointAsync(byte id, CancellationToken cancellationToken = default)
    {
        List<byte[]> replies = await RunAsync("GET_ADDR", id,
            static (b, f, s, i) => MptcpPmMessages.WriteEndpointById(b, f, MPTCP_PM_CMD_GET_ADDR, s, i, null), cancellationToken).ConfigureAwait(false);
        IReadOnlyList<MptcpEndpoint> endpoints = Decode("GET_ADDR", replies, static p => MptcpPmMessages.ReadEndpoint(p));
        return endpoints.Count > 0
            ? endpoints[0]
            : throw new PathManagerException("GET_ADDR", Errno.EBADMSG, null, "the kernel acknowledged without sending the endpoint");
    }

    /// <summary>
    /// In-kernel PM: adds an endpoint (ADD_ADDR) and returns its id: <see cref="MptcpEndpoint.Id"/> when given, else the
    /// id the kernel picked (read back from the endpoint list, since the kernel does not report it).
    /// </summary>
    public async Task<byte> AddEndpointAsync(MptcpEndpoint endpoint, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        ArgumentNullException.ThrowIfNull(endpoint.Address);
        ArgumentOutOfRangeException.ThrowIfNegative(endpoint.Port);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(endpoint.Port, ushort.MaxValue);
        try
        {
            await RunAsync("ADD_ADDR", endpoint,
                static (b, f, s, e) => MptcpPmMessages.WriteAddEndpoint(b, f, s, e), cancellationToken).ConfigureAwait(false);
        }
        catch (PathManagerException e) when (e.Errno == Errno.EADDRINUSE && endpoint.Port != 0)
        {
            // The kernel's own words ("create listen socket error: -98") name neither the port nor why it listens.
            throw new PathManagerException("ADD_ADDR", e.Errno, e.KernelMessage,
                string.Create(CultureInfo.InvariantCulture,
                    $"port {endpoint.Port} on {endpoint.Address.Unmapped()} is in use; an endpoint with a port makes the kernel listen there for joins, so stop what listens on it or choose another port"),
                e);
        }

        if (endpoint.Id != 0)
        {
            return endpoint.Id;
        }

        IPAddress wanted = endpoint.Address.Unmapped();
        foreach (MptcpEndpoint e in await GetEndpointsAsync(cancellationToken).ConfigureAwait(false))
        {
            if (e.Address.Equals(wanted) && e.Port == endpoint.Port)
            {
                return e.Id;
            }
        }

        throw new PathManagerException("ADD_ADDR", Errno.ENOENT, null, "the kernel accepted the endpoint but does not list it");
    }

    /// <summary>In-kernel PM: deletes endpoint <paramref name="id"/> (DEL_ADDR); the kernel sends RM_ADDR where it was announced.</summary>
    public Task DeleteEndpointAsync(byte id, CancellationToken cancellationToken = default) =>
        RunAsync("DEL_ADDR", id, static (b, f, s, i) => MptcpPmMessages.WriteEndpointById(b, f, MPTCP_PM_CMD_DEL_ADDR, s, i, null), cancellationToken);

    /// <summary>In-kernel PM: deletes every endpoint (FLUSH_ADDRS).</summary>
    public Task FlushEndpointsAsync(CancellationToken cancellationToken = default) =>
        RunAsync("FLUSH_ADDRS", 0, static (b, f, s, _) => MptcpPmMessages.WriteBare(b, f, MPTCP_PM_CMD_FLUSH_ADDRS, s, dump: false), cancellationToken);

    /// <summary>
    /// In-kernel PM: changes endpoint <paramref name="id"/>'s flags (SET_FLAGS, as <c>ip mptcp endpoint change</c>).
    /// The kernel changes only <see cref="MptcpEndpointFlags.Backup"/> and <see cref="MptcpEndpointFlags.Fullmesh"/>.
    /// </summary>
    public Task SetEndpointFlagsAsync(byte id, MptcpEndpointFlags flags, CancellationToken cancellationToken = default) =>
        RunAsync("SET_FLAGS", (id, flags), static (b, f, s, st) => MptcpPmMessages.WriteEndpointById(b, f, MPTCP_PM_CMD_SET_FLAGS, s, st.id, (uint)st.flags),
            cancellationToken);

    /// <summary>In-kernel PM: the namespace's limits (GET_LIMITS), as <c>ip mptcp limits show</c>.</summary>
    public async Task<MptcpLimits> GetLimitsAsync(CancellationToken cancellationToken = default)
    {
        List<byte[]> replies = await RunAsync("GET_LIMITS", 0,
            static (b, f, s, _) => MptcpPmMessages.WriteBare(b, f, MPTCP_PM_CMD_GET_LIMITS, s, dump: false), cancellationToken).ConfigureAwait(false);
        IReadOnlyList<MptcpLimits> limits = Decode("GET_LIMITS", replies, static p => MptcpPmMessages.ReadLimits(p));
        return limits.Count > 0
            ? limits[0]
            : throw new PathManagerException("GET_LIMITS", Errno.EBADMSG, null, "the kernel acknowledged without sending the limits");
    }

    /// <summary>In-kernel PM: sets the namespace's limits (SET_LIMITS); the kernel refuses values above 8.</summary>
    public Task SetLimitsAsync(MptcpLimits limits, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(limits);
        return RunAsync("SET_LIMITS", limits, static (b, f, s, l) => MptcpPmMessages.WriteSetLimits(b, f, s, l), cancellationToken);
    }
}
