using System.Globalization;

namespace MptcpAnycast.Host;

/// <summary>
/// The MPTCP settings of this host's network namespace, read from <c>/proc/sys/net/mptcp</c>. Missing files
/// (older kernels) read as null. Reading never throws.
/// </summary>
internal sealed record MptcpHostState
{
    public required MptcpSupport Support { get; init; }

    /// <summary><c>net.mptcp.enabled</c>.</summary>
    public int? Enabled { get; init; }

    /// <summary><c>net.mptcp.path_manager</c> (Linux 6.15+): <c>kernel</c> or <c>userspace</c>.</summary>
    public string? PathManager { get; init; }

    /// <summary><c>net.mptcp.pm_type</c> (Linux 5.19+): 0 kernel, 1 userspace.</summary>
    public int? PmType { get; init; }

    /// <summary><c>net.mptcp.allow_join_initial_addr_port</c>: 0 makes the server set the C flag.</summary>
    public int? AllowJoinInitialAddrPort { get; init; }

    /// <summary><c>net.mptcp.add_addr_timeout</c>, seconds before an unacknowledged ADD_ADDR is sent again.</summary>
    public int? AddAddrTimeout { get; init; }

    /// <summary>The kernel release (<c>uname -r</c>).</summary>
    public required string KernelRelease { get; init; }

    /// <summary>Whether this process holds <c>CAP_NET_ADMIN</c> in its effective set.</summary>
    public required bool HasNetAdmin { get; init; }

    /// <summary>The path manager in effect: <c>userspace</c>, <c>kernel</c>, or null when unknown.</summary>
    public string? EffectivePathManager => PathManager ?? PmType switch
    {
        0 => "kernel",
        1 => "userspace",
        _ => null,
    };

    /// <summary>The kernel's major.minor, or null when <see cref="KernelRelease"/> does not parse.</summary>
    public Version? KernelVersion
    {
        get
        {
            string[] parts = KernelRelease.Split('.', '-');
            return parts.Length >= 2
                && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int major)
                && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int minor)
                ? new Version(major, minor)
                : null;
        }
    }

    public static MptcpHostState Read(string procRoot = "/proc") => new()
    {
        Support = MptcpSocket.CheckSupport(),
        Enabled = ReadInt(procRoot, "sys/net/mptcp/enabled"),
        PathManager = ReadText(procRoot, "sys/net/mptcp/path_manager"),
        PmType = ReadInt(procRoot, "sys/net/mptcp/pm_type"),
        AllowJoinInitialAddrPort = ReadInt(procRoot, "sys/net/mptcp/allow_join_initial_addr_port"),
        AddAddrTimeout = ReadInt(procRoot, "sys/net/mptcp/add_addr_timeout"),
        KernelRelease = ReadText(procRoot, "sys/kernel/osrelease") ?? "unknown",
        HasNetAdmin = HasCapability(procRoot, CapNetAdmin),
    };

    /// <summary>Writes a sysctl under <c>/proc/sys/net/mptcp</c>; returns the error text or null.</summary>
    public static string? TryWrite(string name, string value, string procRoot = "/proc")
    {
        try
        {
            File.WriteAllText(Path.Combine(procRoot, "sys/net/mptcp", name), value);
            return null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return ex.Message;
        }
    }

    internal const int CapNetAdmin = 12;

    internal static bool HasCapability(string procRoot, int capability)
    {
        string? status = ReadText(procRoot, "self/status", trim: false);
        if (status is null)
        {
            return false;
        }

        foreach (string line in status.Split('\n'))
        {
            if (line.StartsWith("CapEff:", StringComparison.Ordinal)
                && ulong.TryParse(line.AsSpan(7).Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong mask))
            {
                return (mask & (1UL << capability)) != 0;
            }
        }

        return false;
    }

    /// <summary>An integer from a file under <paramref name="procRoot"/> (a sysctl), or null when missing or unreadable.</summary>
    internal static int? ReadInt(string procRoot, string path)
        => int.TryParse(ReadText(procRoot, path), NumberStyles.Integer, CultureInfo.InvariantCulture, out int value) ? value : null;

    private static string? ReadText(string procRoot, string path, bool trim = true)
    {
        try
        {
            string text = File.ReadAllText(Path.Combine(procRoot, path));
            return trim ? text.Trim() : text;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
