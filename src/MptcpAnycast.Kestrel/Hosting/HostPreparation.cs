using System.Net;
using Microsoft.Extensions.Logging;
using MptcpAnycast.Host;
using MptcpAnycast.Kestrel.Control;
using MptcpAnycast.Kestrel.Diagnostics;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Kestrel.Hosting;

/// <summary>
/// What start-up decided: the effective mode, the path manager (or why there is none), and the kernel endpoints
/// this process created (removed again at shutdown). The rules come from <see cref="HostCheck"/>.
/// </summary>
internal sealed class HostPreparation
{
    public required AnnouncementMode Mode { get; init; }
    public required bool MptcpSupported { get; init; }
    public IPathManager? PathManager { get; init; }
    public string? PathManagerProblem { get; init; }
    public NetlinkPathManager? EndpointOwner { get; init; }
    public IReadOnlyList<MptcpEndpoint> CreatedEndpoints { get; init; } = [];

    /// <summary>Why this host serves plain TCP (it has no MPTCP), or null.</summary>
    public string? MptcpProblem { get; init; }

    /// <summary>What is wrong with the host that the transport warned about at start and serves on with (the C flag), or null.</summary>
    public string? HostWarning { get; private set; }

    /// <summary>Announcements were asked for (Mode is not None) but there is no unicast address to announce.</summary>
    public bool NothingToAnnounce { get; private set; }

    /// <param name="settings">The validated options.</param>
    /// <param name="commandTimeout">How long each path-manager command may wait for the kernel.</param>
    /// <param name="logger">Where what is wrong with the host is said.</param>
    /// <param name="cancellationToken">Cancels start-up.</param>
    public static async Task<HostPreparation> PrepareAsync(MptcpAnycastSettings settings, TimeSpan commandTimeout, ILogger logger,
        CancellationToken cancellationToken)
    {
        MptcpHostState host = MptcpHostState.Read();
        if (!host.Support.IsSupported)
        {
            MptcpAnycastLog.MptcpUnavailable(logger, host.Support.Message);
            return new HostPreparation { Mode = AnnouncementMode.None, MptcpSupported = false, MptcpProblem = host.Support.Message };
        }

        AnnouncementMode mode = settings.Mode;
        bool nothingToAnnounce = false;
        if (settings.Unicast.Count == 0 && mode != AnnouncementMode.None)
        {
            // Validate has already refused Userspace and Kernel with no unicast address at all; here 'auto' found none.
            if (mode != AnnouncementMode.Auto)
            {
                throw new MptcpAnycastConfigurationException(nameof(MptcpAnycastOptions.UnicastAddresses), "auto",
                    $"Mode = {mode} needs at least one unicast address to announce, and auto found no global address on this host "
                    + "other than the anycast ones; write the address, or use Mode = Auto to serve without announcing");
            }

            MptcpAnycastLog.NothingToAnnounce(logger, settings.UnicastFromAuto
                ? "MptcpAnycast:UnicastAddresses = auto found no global address on this host other than the anycast ones"
                : "MptcpAnycast:UnicastAddresses is empty");
            mode = AnnouncementMode.None;
            nothingToAnnounce = true;
        }

        if (mode == AnnouncementMode.Auto)
        {
            mode = host.PathManager == MptcpPathManagerKind.Userspace ? AnnouncementMode.Userspace : AnnouncementMode.Kernel;
        }

        string? hostWarning = mode != AnnouncementMode.None ? ConfigureCFlag(settings, host, logger) : null;

        var options = new PathManagerClientOptions { CommandTimeout = commandTimeout, EventReceiveBufferSize = settings.EventSocketReceiveBufferSize };
        HostPreparation preparation = mode switch
        {
            AnnouncementMode.Userspace => PrepareUserspace(host, options, logger),
            AnnouncementMode.Kernel => await PrepareKernelAsync(settings, host, options, logger, cancellationToken).ConfigureAwait(false),
            _ => new HostPreparation { Mode = AnnouncementMode.None, MptcpSupported = true },
        };
        preparation.HostWarning = hostWarning;
        preparation.NothingToAnnounce = nothingToAnnounce;
        return preparation;
    }

    /// <returns>What stays wrong (for the health check), or null.</returns>
    private static string? ConfigureCFlag(MptcpAnycastSettings settings, MptcpHostState host, ILogger logger)
    {
        if (!HostCheck.IsCFlagOff(host))
        {
            return null; // set, or a kernel that cannot set it (the host check warns about that)
        }

        if (settings.ConfigureHost && MptcpHostState.TrySetCFlag() is null)
        {
            MptcpAnycastLog.CFlagConfigured(logger);
            return null;
        }

        HostFinding cflag = HostCheck.CFlagFinding(host);
        string fix = cflag.Fix ?? HostCheck.CFlagFix;
        MptcpAnycastLog.CFlagNotSet(logger, cflag.Value, cflag.Why, fix);
        return $"{cflag.Value}: clients may open subflows to the anycast address; fix: {fix}";
    }

    private static HostPreparation PrepareUserspace(MptcpHostState host, PathManagerClientOptions options, ILogger logger)
    {
        if (host.PathManager != MptcpPathManagerKind.Userspace)
        {
            throw new MptcpAnycastConfigurationException(nameof(MptcpAnycastOptions.Mode), "Userspace",
                $"this network namespace runs the {host.PathManager.ToString().ToLowerInvariant()} path manager; "
                + $"run '{HostCheck.UserspacePathManagerFix}', or use Mode = Kernel");
        }

        try
        {
            return new HostPreparation { Mode = AnnouncementMode.Userspace, MptcpSupported = true, PathManager = NetlinkPathManager.Open(options) };
        }
        catch (PathManagerException ex)
        {
            MptcpAnycastLog.PathManagerUnavailable(logger, ex);
            return new HostPreparation
            {
                Mode = AnnouncementMode.Userspace,
                MptcpSupported = true,
                PathManagerProblem = $"the path manager is unavailable: {ex.Message}",
            };
        }
    }

    private static async Task<HostPreparation> PrepareKernelAsync(MptcpAnycastSettings settings, MptcpHostState host, PathManagerClientOptions options,
        ILogger logger, CancellationToken cancellationToken)
    {
        NetlinkPathManager manager;
        try
        {
            manager = NetlinkPathManager.Open(options);
        }
        catch (PathManagerException ex)
        {
            throw new MptcpAnycastConfigurationException(nameof(MptcpAnycastOptions.Mode), "Kernel", $"cannot reach the path manager: {ex.Message}", ex);
        }

        var created = new List<MptcpEndpoint>();
        var ledger = new EndpointLedger();
        try
        {
            if (settings.ConfigureHost)
            {
                await RemoveLeftoversAsync(manager.Client, ledger, logger, cancellationToken).ConfigureAwait(false);
            }

            IReadOnlyList<MptcpEndpoint> endpoints = await manager.Client.GetEndpointsAsync(cancellationToken).ConfigureAwait(false);
            foreach (IPEndPoint unicast in settings.Unicast)
            {
                if (endpoints.Any(e => HostCheck.AnnouncesUnicast(e, unicast)))
                {
                    continue;
                }

                string command = HostCheck.SignalEndpointCommand(unicast);
                if (!settings.ConfigureHost)
                {
                    throw MissingSignalEndpoint(settings, unicast, command);
                }

                if (!host.HasNetAdmin)
                {
                    throw new MptcpAnycastConfigurationException(nameof(MptcpAnycastOptions.UnicastAddresses), Show(unicast),
                        $"Mode = Kernel needs a 'signal' endpoint for it and this process lacks CAP_NET_ADMIN to create one; run '{command}' as root");
                }

                var endpoint = new MptcpEndpoint(0, unicast.Address, unicast.Port, MptcpEndpointFlags.Signal, HostInterfaces.Holding(unicast.Address)?.Index ?? 0);
                byte id = await manager.Client.AddEndpointAsync(endpoint, cancellationToken).ConfigureAwait(false);
                created.Add(endpoint with { Id = id });
                ledger.Record(created, Environment.ProcessId);
                MptcpAnycastLog.EndpointCreated(logger, Show(unicast), id);
            }
        }
        catch (Exception ex) when (ex is not MptcpAnycastConfigurationException)
        {
            await CleanUpAsync(manager.Client, created, logger).ConfigureAwait(false);
            await manager.DisposeAsync().ConfigureAwait(false);
            throw new MptcpAnycastConfigurationException(nameof(MptcpAnycastOptions.Mode), "Kernel", $"cannot set up the kernel endpoints: {ex.Message}", ex);
        }
        catch
        {
            await CleanUpAsync(manager.Client, created, logger).ConfigureAwait(false);
            await manager.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return new HostPreparation
        {
            Mode = AnnouncementMode.Kernel,
            MptcpSupported = true,
            PathManager = manager,
            EndpointOwner = manager,
            CreatedEndpoints = created,
        };
    }

    /// <summary>
    /// Removes endpoints that a crashed earlier process of this namespace created and recorded, when they are still
    /// there unchanged (same id, address and port): an endpoint someone re-created since is left alone.
    /// </summary>
    private static async Task RemoveLeftoversAsync(PathManagerClient client, EndpointLedger ledger, ILogger logger, CancellationToken cancellationToken)
    {
        IReadOnlyList<(int Pid, string File, IReadOnlyList<MptcpEndpoint> Endpoints)> leftovers = ledger.FindLeftovers();
        if (leftovers.Count == 0)
        {
            return;
        }

        IReadOnlyList<MptcpEndpoint> present = await client.GetEndpointsAsync(cancellationToken).ConfigureAwait(false);
        foreach ((int pid, string file, IReadOnlyList<MptcpEndpoint> recorded) in leftovers)
        {
            var stale = recorded.Where(r => present.Any(p => p.Id == r.Id && p.Address.Equals(r.Address) && p.Port == r.Port)).ToList();
            await RemoveEndpointsAsync(client, stale, logger).ConfigureAwait(false);
            MptcpAnycastLog.LeftoversRemoved(logger, stale.Count, pid);
            EndpointLedger.Forget(file);
        }
    }

    /// <summary>Removes the endpoints this process created; used at shutdown and when start-up fails half-way.</summary>
    private static async Task RemoveEndpointsAsync(PathManagerClient client, IReadOnlyList<MptcpEndpoint> endpoints, ILogger logger)
    {
        foreach (MptcpEndpoint endpoint in endpoints)
        {
            try
            {
                await client.DeleteEndpointAsync(endpoint.Id).ConfigureAwait(false);
                MptcpAnycastLog.EndpointRemoved(logger, Show(new IPEndPoint(endpoint.Address, endpoint.Port)), endpoint.Id);
            }
            catch (Exception ex) when (ex is PathManagerException or ObjectDisposedException)
            {
                MptcpAnycastLog.PathManagerUnavailable(logger, ex);
            }
        }
    }

    /// <summary>At shutdown: remove what this process created and its ledger file.</summary>
    public static async Task CleanUpAsync(PathManagerClient client, IReadOnlyList<MptcpEndpoint> endpoints, ILogger logger)
    {
        await RemoveEndpointsAsync(client, endpoints, logger).ConfigureAwait(false);
        new EndpointLedger().Record([], Environment.ProcessId);
    }

    /// <summary>
    /// Kernel mode without the <c>signal</c> endpoint it announces through. With Mode = Auto the operator did not ask
    /// for Kernel mode, so the message says why it was chosen and each way out: the endpoint, ConfigureHost, or the
    /// userspace path manager.
    /// </summary>
    internal static MptcpAnycastConfigurationException MissingSignalEndpoint(MptcpAnycastSettings settings, IPEndPoint unicast, string command)
    {
        string value = settings.ChosenByAuto.Contains(unicast) ? $"auto ({Show(unicast)})" : Show(unicast);
        if (settings.Mode != AnnouncementMode.Auto)
        {
            return new MptcpAnycastConfigurationException(nameof(MptcpAnycastOptions.UnicastAddresses), value,
                $"Mode = Kernel needs a kernel 'signal' endpoint for it and there is none; run '{command}', or set MptcpAnycast:ConfigureHost = true");
        }

        return new MptcpAnycastConfigurationException(nameof(MptcpAnycastOptions.UnicastAddresses), value,
            "Mode = Auto chose Kernel mode because this network namespace runs the in-kernel path manager, and Kernel mode announces "
            + $"through a kernel 'signal' endpoint for {unicast.Address}, which does not exist. Either run '{command}' "
            + "(persist it in your network configuration), or set MptcpAnycast:ConfigureHost = true (the transport creates the endpoint "
            + $"and removes it at shutdown; needs CAP_NET_ADMIN), or switch the namespace to per-connection announcements: {HostCheck.UserspacePathManagerFix}");
    }

    private static string Show(IPEndPoint endPoint) => endPoint.Port == 0 ? endPoint.Address.ToString() : endPoint.ToString();
}
