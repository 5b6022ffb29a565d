using System.Net;

namespace MptcpAnycast.Rescue.Peers;

/// <summary>
/// How a POP takes part in the peer-lookup protocol: its own name and unicast addresses, the port, its peers and
/// their keys, and the bounds on traffic and clock skew. Defaults suit a few dozen POPs.
/// </summary>
internal sealed record PeerChannelOptions
{
    /// <summary>
    /// 62201/udp: in IANA's dynamic range (49152-65535), which IANA never assigns, and above Linux's default
    /// ephemeral range (32768-60999), so no outgoing connection of the host is handed it.
    /// </summary>
    public const int DefaultPort = 62201;

    /// <summary>Shortest key accepted: 128 bits, no weaker than the 128-bit truncated MAC it keys.</summary>
    public const int MinKeyLength = 16;

    /// <summary>This POP's name as its peers know it (the sender name in its messages).</summary>
    public required string LocalName { get; init; }

    /// <summary>This POP's IPv4 unicast address: a socket is bound to it. At least one of the two addresses is needed.</summary>
    public IPAddress? LocalIPv4 { get; init; }

    /// <summary>This POP's IPv6 unicast address: a socket is bound to it.</summary>
    public IPAddress? LocalIPv6 { get; init; }

    /// <summary>The local port; 0 lets the kernel choose (tests).</summary>
    public int Port { get; init; } = DefaultPort;

    /// <summary>The port the peers listen on; null means <see cref="Port"/> (every POP the same).</summary>
    public int? PeerPort { get; init; }

    public IReadOnlyList<RescuePeer> Peers { get; init; } = [];

    /// <summary>
    /// Queries accepted from one peer per second (authentic ones only); 0 means no limit. The same as a peer's own
    /// outbound default, so that a peer within its bound is never refused here.
    /// </summary>
    public int InboundQueriesPerPeerPerSecond { get; init; } = 2000;

    /// <summary>Queries one peer may send at once above the rate.</summary>
    public int InboundQueryBurst { get; init; } = 2000;

    /// <summary>Queries this POP sends per second, all peers together; 0 means no limit.</summary>
    public int OutboundQueriesPerSecond { get; init; } = 2000;

    /// <summary>Queries this POP may send at once above the rate.</summary>
    public int OutboundQueryBurst { get; init; } = 2000;

    /// <summary>
    /// How far ahead of this POP's clock a peer's sequence numbers may be; beyond it they are rejected so that a peer
    /// whose clock ran ahead cannot push the replay window where its later, correct numbers would be rejected.
    /// <see cref="Timeout.InfiniteTimeSpan"/> turns the check off.
    /// </summary>
    public TimeSpan MaxClockSkew { get; init; } = TimeSpan.FromSeconds(60);
}
