namespace MptcpAnycast.Host;

/// <summary>How much a finding of the host check matters.</summary>
public enum FindingSeverity
{
    /// <summary>As it should be.</summary>
    Ok,

    /// <summary>Works, but some clients or some features lose out.</summary>
    Warning,

    /// <summary>The host is not ready for its role.</summary>
    Problem,
}

/// <summary>What the host is checked for.</summary>
public enum HostRole
{
    /// <summary>A POP's server on the anycast address.</summary>
    Server,

    /// <summary>A client that should survive anycast route changes.</summary>
    Client,
}

/// <summary>One line of the host check: what was read, whether it is right for the role, why, the fix and how to keep it.</summary>
/// <param name="Name">A stable identifier: <c>mptcp</c>, <c>kernel</c>, <c>path_manager</c>, <c>c_flag</c>, <c>add_addr_timeout</c>,
/// <c>limits</c>, <c>endpoints</c>, <c>add_addr</c>, <c>path_manager_state</c>, <c>cap_net_admin</c>.</param>
/// <param name="Severity">Ok, warning or problem for the role.</param>
/// <param name="Value">What was read.</param>
/// <param name="Why">Why it matters for anycast.</param>
/// <param name="Fix">The system command that fixes it now, or null.</param>
/// <param name="Persist">How to make <paramref name="Fix"/> survive a reboot, or null when it needs nothing more.</param>
public sealed record HostFinding(string Name, FindingSeverity Severity, string Value, string Why, string? Fix = null, string? Persist = null);
