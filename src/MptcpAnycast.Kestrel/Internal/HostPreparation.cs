using System.Globalization;
using System.Net;
using System.Net.NetworkInformation;
using Microsoft.Extensions.Logging;
using MptcpAnycast.Host;
using MptcpAnycast.Kestrel.Announcing;
using MptcpAnycast.Kestrel.Diagnostics;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Kestrel.Internal;

/// <summary>
/// What start-up decided: the effective mode, the path manager (or why there is none), and the kernel endpoints
/// this process created (removed again at shutdown).
/// </summary>
internal sealed class HostPreparation
{
    public required AnnouncementMode Mode { get; init; }
    public required bool MptcpSupported { get; init; }
    public IPathManager? PathManager { get; init; }
    public string? PathManagerProblem { get; init; }
    public KernelPathManager? EndpointOwner { get; init; }
    public IReadOnlyList<MptcpEndpoint> CreatedEndpoints { get; init; } = [];

    public static async Task<HostPreparation> PrepareAsync(MptcpAnycastSettings settings, ILogger logger, CancellationToken cancellationToken)
    {
        MptcpSupport support = MptcpSocket.CheckSupport();
        if (!support.IsSupported)
        {
            MptcpAnycastLog.MptcpUnavailable(logger, support.Message);
            return new HostPreparation { Mode = AnnouncementMode.None, MptcpSupported = false };
        }

        MptcpHostState host = MptcpHostState.Read();
        AnnouncementMode mode = settings.Mode;
        if (settings.Unicast.Count == 0 && mode != AnnouncementMode.None)
        {
            if (mode != AnnouncementMode.Auto)
            {
                throw new MptcpAnycastConfigurationException(nameof(MptcpAnycastOptions.UnicastAddresses), "",
                    $"Mode = {mode} needs at least one unicast address to announce (or 'auto')");
            }

            mode = AnnouncementMode.None;
        }

        if (mode == AnnouncementMode.Auto)
        {
            mode = host.EffectivePathManager == "userspace" ? AnnouncementMode.Userspace : AnnouncementMode.Kernel;
        }

        if (mode != AnnouncementMode.None)
        {
            ConfigureCFlag(settings, host, logger);
        }

        return mode switch
        {
            AnnouncementMode.Userspace => await PrepareUserspaceAsync(settings, host, logger, cancellationToken).ConfigureAwait(false),
            AnnouncementMode.Kernel => await PrepareKernelAsync(settings, host, logger, cancellationToken).ConfigureAwait(false),
            _ => new HostPreparation { Mode = AnnouncementMode.None, MptcpSupported = true },
        };
    }

    private static void ConfigureCFlag(MptcpAnycastSettings settings, MptcpHostState host, ILogger logger)
    {
        if (host.AllowJoinInitialAddrPort != 1)
        {
            return;
        }

        if (settings.ConfigureHost && MptcpHostState.TryWrite("allow_join_initial_addr_port", "0") is null)
        {
            MptcpAnycastLog.CFlagConfigured(logger);
            return;
        }

        MptcpAnycastLog.CFlagNotSet(logger);
    }

    private static async Task<HostPreparation> PrepareUserspaceAsync(MptcpAnycastSettings settings, MptcpHostState host, ILogger logger,
        CancellationToken cancellationToken)
    {
        if (host.EffectivePathManager != "userspace")
        {
            throw new MptcpAnycastConfigurationException(nameof(MptcpAnycastOptions.Mode), "Userspace",
                $"this network namespace runs the {host.EffectivePathManager ?? "unknown"} path manager; "
                + "run 'sysctl -w net.mptcp.path_manager=userspace' (Linux 6.15+; older: net.mptcp.pm_type=1), or use Mode = Kernel");
        }

        try
        {
            (KernelPathManager manager, string? eventsProblem) = await KernelPathManager.OpenAsync(subscribe: true,
                settings.EventSocketReceiveBufferSize, cancellationToken).ConfigureAwait(false);
            if (eventsProblem is not null)
            {
                // Without an event subscriber the kernel resets every join: announcing would only waste packets.
                await manager.DisposeAsync().ConfigureAwait(false);
                MptcpAnycastLog.NoNetAdmin(logger, "cannot subscribe to path-manager events, so per-connection announcements are off");
                return new HostPreparation
                {
                    Mode = AnnouncementMode.Userspace,
                    MptcpSupported = true,
                    PathManagerProblem = $"announcements are off: {eventsProblem}",
                };
            }

            return new HostPreparation { Mode = AnnouncementMode.Userspace, MptcpSupported = true, PathManager = manager };
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

    private static async Task<HostPreparation> PrepareKernelAsync(MptcpAnycastSettings settings, MptcpHostState host, ILogger logger,
        CancellationToken cancellationToken)
    {
        KernelPathManager manager;
        string? eventsProblem;
        try
        {
            (manager, eventsProblem) = await KernelPathManager.OpenAsync(subscribe: true, settings.EventSocketReceiveBufferSize, cancellationToken).ConfigureAwait(false);
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
                await RemoveLeftoversAsync(manager, ledger, logger, cancellationToken).ConfigureAwait(false);
            }

            IReadOnlyList<MptcpEndpoint> endpoints = await manager.Client.GetEndpointsAsync(cancellationToken).ConfigureAwait(false);
            foreach (IPEndPoint unicast in settings.Unicast)
            {
                bool present = endpoints.Any(e => (e.Flags & MptcpEndpointFlags.Signal) != 0
                    && e.Address.Equals(unicast.Address) && (unicast.Port == 0 || e.Port == unicast.Port));
                if (present)
                {
                    continue;
                }

                string command = EndpointCommand(unicast);
                if (!settings.ConfigureHost)
                {
                    throw new MptcpAnycastConfigurationException(nameof(MptcpAnycastOptions.UnicastAddresses), Show(unicast),
                        $"Mode = Kernel needs a kernel 'signal' endpoint for it and there is none; run '{command}', or set ConfigureHost = true");
                }

                if (!host.HasNetAdmin)
                {
                    throw new MptcpAnycastConfigurationException(nameof(MptcpAnycastOptions.UnicastAddresses), Show(unicast),
                        $"Mode = Kernel needs a 'signal' endpoint for it and this process lacks CAP_NET_ADMIN to create one; run '{command}' as root");
                }

                var endpoint = new MptcpEndpoint(0, unicast.Address, unicast.Port, MptcpEndpointFlags.Signal, InterfaceIndexOf(unicast.Address));
                byte id = await manager.Client.AddEndpointAsync(endpoint, cancellationToken).ConfigureAwait(false);
                created.Add(endpoint with { Id = id });
                ledger.Record(created, Environment.ProcessId);
                MptcpAnycastLog.EndpointCreated(logger, Show(unicast), id);
            }
        }
        catch (Exception ex) when (ex is not MptcpAnycastConfigurationException)
        {
            await CleanUpAsync(manager, created, logger).ConfigureAwait(false);
            await manager.DisposeAsync().ConfigureAwait(false);
            throw new MptcpAnycastConfigurationException(nameof(MptcpAnycastOptions.Mode), "Kernel", $"cannot set up the kernel endpoints: {ex.Message}", ex);
        }
        catch
        {
            await CleanUpAsync(manager, created, logger).ConfigureAwait(false);
            await manager.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        if (eventsProblem is not null)
        {
            MptcpAnycastLog.EventsUnavailable(logger, eventsProblem);
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
    private static async Task RemoveLeftoversAsync(KernelPathManager manager, EndpointLedger ledger, ILogger logger, CancellationToken cancellationToken)
    {
        IReadOnlyList<(int Pid, string File, IReadOnlyList<MptcpEndpoint> Endpoints)> leftovers = ledger.FindLeftovers();
        if (leftovers.Count == 0)
        {
            return;
        }

        IReadOnlyList<MptcpEndpoint> present = await manager.Client.GetEndpointsAsync(cancellationToken).ConfigureAwait(false);
        foreach ((int pid, string file, IReadOnlyList<MptcpEndpoint> recorded) in leftovers)
        {
            var stale = recorded.Where(r => present.Any(p => p.Id == r.Id && p.Address.Equals(r.Address) && p.Port == r.Port)).ToList();
            await RemoveEndpointsAsync(manager, stale, logger).ConfigureAwait(false);
            MptcpAnycastLog.LeftoversRemoved(logger, stale.Count, pid);
            EndpointLedger.Forget(file);
        }
    }

    /// <summary>Removes the endpoints this process created; used at shutdown and when start-up fails half-way.</summary>
    public static async Task RemoveEndpointsAsync(KernelPathManager manager, IReadOnlyList<MptcpEndpoint> endpoints, ILogger logger)
    {
        foreach (MptcpEndpoint endpoint in endpoints)
        {
            try
            {
                await manager.Client.DeleteEndpointAsync(endpoint.Id).ConfigureAwait(false);
                MptcpAnycastLog.EndpointRemoved(logger, Show(new IPEndPoint(endpoint.Address, endpoint.Port)), endpoint.Id);
            }
            catch (Exception ex) when (ex is PathManagerException or ObjectDisposedException or TimeoutException)
            {
                MptcpAnycastLog.PathManagerUnavailable(logger, ex);
            }
        }
    }

    /// <summary>At shutdown: remove what this process created and its ledger file.</summary>
    public static async Task CleanUpAsync(KernelPathManager manager, IReadOnlyList<MptcpEndpoint> endpoints, ILogger logger)
    {
        await RemoveEndpointsAsync(manager, endpoints, logger).ConfigureAwait(false);
        new EndpointLedger().Record([], Environment.ProcessId);
    }

    internal static string EndpointCommand(IPEndPoint unicast)
    {
        string port = unicast.Port == 0 ? "" : $" port {unicast.Port.ToString(CultureInfo.InvariantCulture)}";
        string? device = DeviceOf(unicast.Address);
        return $"ip mptcp endpoint add {unicast.Address}{port}{(device is null ? "" : $" dev {device}")} signal";
    }

    private static string Show(IPEndPoint endPoint) => endPoint.Port == 0 ? endPoint.Address.ToString() : endPoint.ToString();

    private static int InterfaceIndexOf(IPAddress address)
    {
        foreach (NetworkInterface nic in SafeInterfaces())
        {
            if (nic.GetIPProperties().UnicastAddresses.Any(u => u.Address.Equals(address)))
            {
                IPInterfaceProperties properties = nic.GetIPProperties();
                return address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6
                    ? properties.GetIPv6Properties()?.Index ?? 0
                    : properties.GetIPv4Properties()?.Index ?? 0;
            }
        }

        return 0;
    }

    private static string? DeviceOf(IPAddress address)
        => SafeInterfaces().FirstOrDefault(n => n.GetIPProperties().UnicastAddresses.Any(u => u.Address.Equals(address)))?.Name;

    private static NetworkInterface[] SafeInterfaces()
    {
        try
        {
            return NetworkInterface.GetAllNetworkInterfaces();
        }
        catch (NetworkInformationException)
        {
            return [];
        }
    }
}
