using System.Globalization;
using System.Net;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Host;

/// <summary>
/// What a host's MPTCP state means for anycast: findings (ok, warning, problem) for a server or a client, each with why
/// it matters and the command that fixes it. The one home of these rules: <c>mptcp-anycast check</c> prints them and
/// the Kestrel transport applies them at start-up. Pure: no I/O.
/// </summary>
public static class HostCheck
{
    /// <summary>The command that makes a namespace run the userspace path manager.</summary>
    public const string UserspacePathManagerFix = "sysctl -w net.mptcp.path_manager=userspace (Linux 6.15+; older kernels: sysctl -w net.mptcp.pm_type=1)";

    /// <summary>The command that makes the server set the C flag.</summary>
    public const string CFlagFix = "sysctl -w net.mptcp.allow_join_initial_addr_port=0";

    /// <summary>The file this check's persistence advice writes sysctls to.</summary>
    internal const string SysctlFile = "/etc/sysctl.d/90-mptcp-anycast.conf";

    /// <summary>
    /// Why <c>ip mptcp limits</c> and endpoints need more than the command: the kernel forgets them at reboot and
    /// NetworkManager never sets limits.
    /// </summary>
    internal const string PathManagerPersist = "ip mptcp limits and endpoints are lost at reboot: run the same command at boot from a systemd oneshot unit "
        + "(Type=oneshot, RemainAfterExit=yes); NetworkManager's connection.mptcp-flags adds endpoints but never changes limits, "
        + "mptcpd's addr_adv plugin may raise them (check with ip mptcp limits show)";

    /// <summary>Every finding for <paramref name="role"/>; the path manager's limits and endpoints add findings when given.</summary>
    public static IReadOnlyList<HostFinding> Evaluate(MptcpHostState state, HostRole role, PathManagerSnapshot? pathManager = null)
    {
        ArgumentNullException.ThrowIfNull(state);
        var findings = new List<HostFinding>();

        findings.Add(state.Support.IsSupported
            ? new HostFinding("mptcp", FindingSeverity.Ok, $"available (net.mptcp.enabled = {Show(state.Enabled)})",
                "MPTCP sockets can be created in this network namespace.")
            : new HostFinding("mptcp", FindingSeverity.Problem, $"unavailable: {state.Support.Reason}",
                state.Support.Message,
                state.Support.Reason == MptcpUnsupportedReason.Disabled ? "sysctl -w net.mptcp.enabled=1" : "use a Linux 5.6+ kernel built with CONFIG_MPTCP",
                state.Support.Reason == MptcpUnsupportedReason.Disabled ? SysctlPersist("net.mptcp.enabled", 1) : null));

        findings.Add(KernelFinding(state, role));

        if (role == HostRole.Server)
        {
            findings.Add(PathManagerFinding(state));
            findings.Add(CFlagFinding(state));
            findings.Add(AddAddrTimeoutFinding(state));
            if (pathManager is not null)
            {
                findings.AddRange(ServerPathManagerFindings(state, pathManager));
            }

            findings.Add(state.HasNetAdmin
                ? new HostFinding("cap_net_admin", FindingSeverity.Ok, "held",
                    "The server can announce its unicast address per connection, follow path-manager events and create endpoints.")
                : new HostFinding("cap_net_admin", FindingSeverity.Warning, "not held",
                    "Without CAP_NET_ADMIN the server cannot announce per connection (userspace path manager) nor create kernel endpoints; "
                    + "only Kernel mode with an endpoint created beforehand works.",
                    "run with CAP_NET_ADMIN, e.g. systemd AmbientCapabilities=CAP_NET_ADMIN"));
        }
        else
        {
            findings.Add(ClientPathManagerFinding(state));
            if (pathManager is not null)
            {
                findings.AddRange(ClientPathManagerFindings(pathManager));
            }

            findings.Add(new HostFinding("cap_net_admin", FindingSeverity.Ok, state.HasNetAdmin ? "held" : "not held",
                "A client needs no privilege to open MPTCP connections."));
        }

        return findings;
    }

    /// <summary>Ready when no finding is a problem (warnings allowed).</summary>
    public static bool IsReady(IEnumerable<HostFinding> findings) => findings.All(f => f.Severity != FindingSeverity.Problem);

    /// <summary>
    /// Whether this kernel could set the C flag but is told not to (<c>net.mptcp.allow_join_initial_addr_port = 1</c>):
    /// the case the transport sets the sysctl for (with <c>ConfigureHost</c>) or warns about, and the check warns about.
    /// </summary>
    public static bool IsCFlagOff(MptcpHostState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        return state.AllowJoinInitialAddrPort == 1;
    }

    /// <summary>
    /// Whether <paramref name="endpoint"/> makes the in-kernel path manager announce <paramref name="unicast"/>: a
    /// <c>signal</c> endpoint on its address, and on its port unless <paramref name="unicast"/> has port 0 (the
    /// connection's own port).
    /// </summary>
    public static bool AnnouncesUnicast(MptcpEndpoint endpoint, IPEndPoint unicast)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        ArgumentNullException.ThrowIfNull(unicast);
        return endpoint.Flags.HasFlag(MptcpEndpointFlags.Signal)
            && endpoint.Address.Unmapped().Equals(unicast.Address.Unmapped())
            && (unicast.Port == 0 || endpoint.Port == unicast.Port);
    }

    /// <summary>The command that keeps a sysctl across reboots.</summary>
    internal static string SysctlPersist(string name, int value) =>
        $"echo '{name} = {value.ToString(CultureInfo.InvariantCulture)}' >> {SysctlFile}";

    /// <summary>
    /// The <c>ip mptcp limits</c> command that lets a client join an announced address: each limit raised to at least 1,
    /// a higher one kept.
    /// </summary>
    internal static string ClientLimitsFix(MptcpLimits limits)
    {
        ArgumentNullException.ThrowIfNull(limits);
        return FormattableString.Invariant($"ip mptcp limits set add_addr_accepted {Math.Max(1u, limits.AddAddrAccepted)} subflows {Math.Max(1u, limits.Subflows)}");
    }

    /// <summary>
    /// The <c>ip mptcp endpoint</c> command that makes the in-kernel path manager announce <paramref name="unicast"/> on
    /// every connection (with its port when it has one, and the interface that holds it).
    /// </summary>
    public static string SignalEndpointCommand(IPEndPoint unicast)
    {
        ArgumentNullException.ThrowIfNull(unicast);
        string port = unicast.Port == 0 ? "" : $" port {unicast.Port.ToString(CultureInfo.InvariantCulture)}";
        string? device = HostInterfaces.Holding(unicast.Address)?.Name;
        return $"ip mptcp endpoint add {unicast.Address.Unmapped()}{port}{(device is null ? "" : $" dev {device}")} signal";
    }

    private static IEnumerable<HostFinding> ServerPathManagerFindings(MptcpHostState state, PathManagerSnapshot pm)
    {
        if (pm.Limits is not MptcpLimits limits)
        {
            yield return Unreadable(pm);
            yield break;
        }

        yield return LimitsFinding(limits, "The in-kernel path manager's limits (the userspace path manager does not use them).");
        MptcpEndpoint[] signal = [.. pm.Endpoints.Where(e => e.Flags.HasFlag(MptcpEndpointFlags.Signal))];
        string listed = Summarize(pm.Endpoints);
        if (state.PathManager == MptcpPathManagerKind.Userspace)
        {
            yield return new HostFinding("endpoints", FindingSeverity.Ok, listed,
                "The userspace path manager announces per connection; endpoints are not used for that.");
        }
        else if (signal.Length > 0)
        {
            yield return new HostFinding("endpoints", FindingSeverity.Ok, listed,
                $"Kernel mode announces {string.Join(", ", signal.Select(e => e.Address))} (signal) on every MPTCP connection.");
        }
        else
        {
            yield return new HostFinding("endpoints", FindingSeverity.Warning, listed,
                "Kernel mode with no 'signal' endpoint announces nothing: clients never learn the unicast address. "
                + "The transport creates one at start-up when ConfigureHost = true (with CAP_NET_ADMIN) and otherwise refuses to start in Kernel mode.",
                "ip mptcp endpoint add UNICAST_ADDRESS dev IF signal",
                PathManagerPersist + ", or let the transport create it (ConfigureHost = true)");
        }
    }

    private static IEnumerable<HostFinding> ClientPathManagerFindings(PathManagerSnapshot pm)
    {
        if (pm.Limits is not MptcpLimits limits)
        {
            yield return Unreadable(pm);
            yield break;
        }

        yield return LimitsFinding(limits, "Additional subflows and accepted ADD_ADDR per connection.");
        MptcpEndpoint[] subflow = [.. pm.Endpoints.Where(e => e.Flags.HasFlag(MptcpEndpointFlags.Subflow))];
        string fix = ClientLimitsFix(limits);
        if (limits.Subflows == 0)
        {
            yield return new HostFinding("add_addr", FindingSeverity.Problem, "subflows = 0",
                "With a subflow limit of 0 no second subflow can open, so the announced unicast address is never joined: "
                + "connections die when the anycast route moves.",
                fix, PathManagerPersist);
        }
        else if (limits.AddAddrAccepted > 0)
        {
            yield return new HostFinding("add_addr", FindingSeverity.Ok, $"accepted (add_addr_accepted = {limits.AddAddrAccepted})",
                "The client accepts the server's ADD_ADDR and joins the unicast address from its main address.");
        }
        else if (subflow.Length > 0)
        {
            yield return new HostFinding("add_addr", FindingSeverity.Warning,
                $"accepted only after a C-flag handshake (subflow endpoint {string.Join(", ", subflow.Select(e => e.Address))})",
                "With add_addr_accepted = 0 the kernel takes only the one ADD_ADDR that follows a handshake with the C flag set, "
                + "and joins from its 'subflow' endpoints; that needs kernel fix 4b1ff850e0c1 (2025 stable trees) and a server that sets the C flag.",
                fix, PathManagerPersist);
        }
        else
        {
            yield return new HostFinding("add_addr", FindingSeverity.Problem, "ignored (add_addr_accepted = 0, no subflow endpoint)",
                "This client ignores the server's ADD_ADDR, so it never opens the unicast subflow: its connections die when the anycast route moves.",
                fix, PathManagerPersist);
        }
    }

    private static HostFinding ClientPathManagerFinding(MptcpHostState state)
    {
        string source = state.PathManagerSetting is not null ? "net.mptcp.path_manager" : "net.mptcp.pm_type";
        return state.PathManager switch
        {
            MptcpPathManagerKind.Kernel => new HostFinding("path_manager", FindingSeverity.Ok, $"kernel ({source})",
                "The kernel joins announced addresses by itself, within the limits."),
            MptcpPathManagerKind.Userspace => new HostFinding("path_manager", FindingSeverity.Warning, $"userspace ({source})",
                "Under the userspace path manager the kernel opens no subflow by itself: connections survive a route change only if a daemon "
                + "(such as mptcpd with a userspace plugin) joins the announced address. The limits below do not apply.",
                state.PathManagerSetting is not null ? "sysctl -w net.mptcp.path_manager=kernel" : "sysctl -w net.mptcp.pm_type=0",
                state.PathManagerSetting is not null ? $"echo 'net.mptcp.path_manager = kernel' >> {SysctlFile}" : SysctlPersist("net.mptcp.pm_type", 0)),
            _ => new HostFinding("path_manager", FindingSeverity.Warning, "unknown",
                "Neither net.mptcp.path_manager nor net.mptcp.pm_type could be read."),
        };
    }

    private static HostFinding LimitsFinding(MptcpLimits limits, string why) =>
        new("limits", FindingSeverity.Ok, $"subflows {limits.Subflows}, add_addr_accepted {limits.AddAddrAccepted}", why);

    private static HostFinding Unreadable(PathManagerSnapshot pm) =>
        new("path_manager_state", FindingSeverity.Warning, "unreadable", pm.Error ?? "The path manager did not answer.");

    private static string Summarize(IReadOnlyList<MptcpEndpoint> endpoints) => endpoints.Count == 0
        ? "none"
        : string.Join("; ", endpoints);

    private static HostFinding KernelFinding(MptcpHostState state, HostRole role)
    {
        Version? version = state.KernelVersion;
        if (version is null)
        {
            return new HostFinding("kernel", FindingSeverity.Warning, state.KernelRelease, "The kernel release could not be parsed.");
        }

        if (role == HostRole.Server && version < new Version(5, 19))
        {
            return new HostFinding("kernel", FindingSeverity.Warning, state.KernelRelease,
                "The userspace path manager (per-connection announcements) needs Linux 5.19+; only Kernel mode works here.",
                "upgrade to Linux 6.x");
        }

        return new HostFinding("kernel", FindingSeverity.Ok, state.KernelRelease,
            role == HostRole.Server
                ? "New enough for both the userspace and the in-kernel path manager."
                : "New enough for MPTCP clients.");
    }

    /// <summary>The path manager the namespace runs, and what that means for announcing.</summary>
    public static HostFinding PathManagerFinding(MptcpHostState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        string source = state.PathManagerSetting is not null ? "net.mptcp.path_manager" : "net.mptcp.pm_type";
        return state.PathManager switch
        {
            MptcpPathManagerKind.Userspace => new HostFinding("path_manager", FindingSeverity.Ok, $"userspace ({source})",
                "Announcements are per connection (Userspace mode); the announcing process must hold the event subscription open, "
                + "or the kernel resets every join."),
            MptcpPathManagerKind.Kernel => new HostFinding("path_manager", FindingSeverity.Ok, $"kernel ({source})",
                "Announcements come from a 'signal' endpoint for the unicast address (Kernel mode), on every MPTCP connection of the namespace.",
                "for per-connection announcements: " + UserspacePathManagerFix),
            _ => new HostFinding("path_manager", FindingSeverity.Warning, "unknown",
                "Neither net.mptcp.path_manager nor net.mptcp.pm_type could be read."),
        };
    }

    /// <summary>
    /// Whether the server sets the C flag (<c>net.mptcp.allow_join_initial_addr_port = 0</c>). Off is a warning, as for the
    /// transport, which then serves on and logs the same text: connections work, but fewer clients survive a route change.
    /// </summary>
    public static HostFinding CFlagFinding(MptcpHostState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        return state.AllowJoinInitialAddrPort switch
        {
            0 => new HostFinding("c_flag", FindingSeverity.Ok, "net.mptcp.allow_join_initial_addr_port = 0",
                "The server sets the C flag: clients do not open subflows to the anycast address, only to the announced unicast one."),
            1 => new HostFinding("c_flag", FindingSeverity.Warning, "net.mptcp.allow_join_initial_addr_port = 1",
                "Clients may open extra subflows to the anycast address itself; routing can deliver those to another POP, which resets them, "
                + "and clients with default limits (add_addr_accepted = 0) take the unicast ADD_ADDR only when the C flag is set. "
                + "The transport sets it at start-up when ConfigureHost = true (with CAP_NET_ADMIN).",
                CFlagFix, SysctlPersist("net.mptcp.allow_join_initial_addr_port", 0)),
            null => new HostFinding("c_flag", FindingSeverity.Warning, "net.mptcp.allow_join_initial_addr_port missing",
                "This kernel cannot set the C flag (Linux 5.17+ can); clients may try to join the anycast address.",
                "upgrade to Linux 5.17+"),
            int other => new HostFinding("c_flag", FindingSeverity.Warning, $"net.mptcp.allow_join_initial_addr_port = {other}",
                "Unexpected value."),
        };
    }

    private static HostFinding AddAddrTimeoutFinding(MptcpHostState state) => state.AddAddrTimeout switch
    {
        null => new HostFinding("add_addr_timeout", FindingSeverity.Warning, "missing",
            "net.mptcp.add_addr_timeout could not be read."),
        0 => new HostFinding("add_addr_timeout", FindingSeverity.Warning, "net.mptcp.add_addr_timeout = 0",
            "An ADD_ADDR lost on the way is never sent again, so some clients never learn the unicast address.",
            "sysctl -w net.mptcp.add_addr_timeout=120", SysctlPersist("net.mptcp.add_addr_timeout", 120)),
        int seconds => new HostFinding("add_addr_timeout", FindingSeverity.Ok, $"net.mptcp.add_addr_timeout = {seconds}",
            $"An ADD_ADDR that the client does not echo is sent again after {seconds} s."),
    };

    private static string Show(int? value) => value?.ToString(CultureInfo.InvariantCulture) ?? "?";
}
