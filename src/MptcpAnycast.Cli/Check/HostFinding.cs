namespace MptcpAnycast.Cli.Check;

internal enum FindingSeverity
{
    Ok,
    Warning,
    Problem,
}

internal enum HostRole
{
    Server,
    Client,
}

/// <summary>One line of the host check: what was read, whether it is right for the role, why, and the fix.</summary>
internal sealed record HostFinding(string Name, FindingSeverity Severity, string Value, string Why, string? Fix = null);
