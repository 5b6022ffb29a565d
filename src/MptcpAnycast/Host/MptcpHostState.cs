using System.Globalization;
using MptcpAnycast.Interop;

namespace MptcpAnycast.Host;

/// <summary>Which MPTCP path manager a network namespace runs.</summary>
public enum MptcpPathManagerKind
{
    /// <summary>Neither <c>net.mptcp.path_manager</c> nor <c>net.mptcp.pm_type</c> could be read.</summary>
    Unknown = 0,

    /// <summary>The in-kernel path manager: endpoints (<c>ip mptcp endpoint</c>) apply to every connection of the namespace.</summary>
    Kernel,

    /// <summary>The userspace path manager: a process announces and opens subflows per connection.</summary>
    Userspace,
}

/// <summary>
/// The MPTCP settings of this host's network namespace, read from <c>/proc/sys/net/mptcp</c>. Missing files
/// (older kernels) read as null. Reading never throws. <see cref="HostCheck"/> says what they mean for a server or a client.
/// </summary>
public sealed record MptcpHostState
{
    /// <summary>Whether MPTCP sockets can be created here, and why not.</summary>
    public required MptcpSupport Support { get; init; }

    /// <summary><c>net.mptcp.enabled</c>.</summary>
    public int? Enabled { get; init; }

    /// <summary><c>net.mptcp.path_manager</c> as written (Linux 6.15+): <c>kernel</c> or <c>userspace</c>.</summary>
    public string? PathManagerSetting { get; init; }

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

    /// <summary>The path manager in effect, from <see cref="PathManagerSetting"/> or else <see cref="PmType"/>.</summary>
    public MptcpPathManagerKind PathManager => PathManagerSetting switch
    {
        "kernel" => MptcpPathManagerKind.Kernel,
        "userspace" => MptcpPathManagerKind.Userspace,
        null => PmType switch
        {
            0 => MptcpPathManagerKind.Kernel,
            1 => MptcpPathManagerKind.Userspace,
            _ => MptcpPathManagerKind.Unknown,
        },
        _ => MptcpPathManagerKind.Unknown,
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

    /// <summary>Reads the calling thread's network namespace.</summary>
    public static MptcpHostState Read() => Read("/proc");

    internal static MptcpHostState Read(string procRoot) => new()
    {
        Support = MptcpSocket.CheckSupport(),
        Enabled = ProcFiles.ReadInt(procRoot, "sys/net/mptcp/enabled"),
        PathManagerSetting = ProcFiles.ReadText(procRoot, "sys/net/mptcp/path_manager"),
        PmType = ProcFiles.ReadInt(procRoot, "sys/net/mptcp/pm_type"),
        AllowJoinInitialAddrPort = ProcFiles.ReadInt(procRoot, "sys/net/mptcp/allow_join_initial_addr_port"),
        AddAddrTimeout = ProcFiles.ReadInt(procRoot, "sys/net/mptcp/add_addr_timeout"),
        KernelRelease = ProcFiles.ReadText(procRoot, "sys/kernel/osrelease") ?? "unknown",
        HasNetAdmin = HasCapability(procRoot, CapNetAdmin),
    };

    /// <summary>
    /// Sets <c>net.mptcp.allow_join_initial_addr_port = 0</c> in the calling thread's namespace, so that the server sets
    /// the C flag. Needs <c>CAP_NET_ADMIN</c>. Returns null, or why it failed.
    /// </summary>
    public static string? TrySetCFlag() => TryWrite("allow_join_initial_addr_port", "0");

    internal static string? TryWrite(string name, string value, string procRoot = "/proc")
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
        string? status = ProcFiles.ReadText(procRoot, "self/status", trim: false);
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
}
