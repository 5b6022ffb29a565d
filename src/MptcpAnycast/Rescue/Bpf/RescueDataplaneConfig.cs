using System.Net;

namespace MptcpAnycast.Rescue.Bpf;

/// <summary>What the rescue program needs to know of this POP (the <c>rescue_config</c> map).</summary>
internal sealed record RescueDataplaneConfig
{
    /// <summary>This POP's unicast IPv4: the tunnel's source, and the only destination encapsulated packets are accepted at.</summary>
    public IPAddress? LocalIPv4 { get; init; }

    public IPAddress? LocalIPv6 { get; init; }

    /// <summary>The MSS that SYN-ACKs from an anycast address carry at most (0: unchanged).</summary>
    public int MssIPv4 { get; init; }

    public int MssIPv6 { get; init; }

    /// <summary>At most this many misses are reported to userspace per CPU per <see cref="MissWindow"/>; the rest are only counted.</summary>
    public int MissReportsPerWindow { get; init; } = 200;

    public TimeSpan MissWindow { get; init; } = TimeSpan.FromMilliseconds(10);
}
