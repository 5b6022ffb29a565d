using System.Net;

namespace MptcpAnycast.Kestrel;

/// <summary>Where a connection stands with its unicast subflow.</summary>
public enum UnicastSubflowState
{
    /// <summary>Nothing announced (see <see cref="IMptcpConnectionFeature.StateReason"/>: plain TCP, not anycast, on demand, ...).</summary>
    NotAnnounced = 0,

    /// <summary>The unicast address was announced; the client has not joined yet.</summary>
    Announced,

    /// <summary>The client opened a subflow to the unicast address: the connection survives an anycast route change.</summary>
    Joined,

    /// <summary>The client did not join within the join timeout; the connection works single-path.</summary>
    JoinTimedOut,

    /// <summary>The announcement failed (see <see cref="IMptcpConnectionFeature.StateReason"/>); the connection works single-path.</summary>
    Failed,
}

/// <summary>
/// The MPTCP state of one connection, on <c>ConnectionContext.Features</c> and <c>HttpContext.Features</c>.
/// </summary>
public interface IMptcpConnectionFeature
{
    /// <summary>True when the connection speaks MPTCP; false when it is plain TCP (see <see cref="FallbackReason"/>).</summary>
    bool IsMptcp { get; }

    /// <summary>Why the connection is plain TCP, or <see cref="MptcpFallbackReason.None"/>.</summary>
    MptcpFallbackReason FallbackReason { get; }

    /// <summary>The server's connection token (as in path-manager commands and events); 0 for plain TCP.</summary>
    uint Token { get; }

    /// <summary>The unicast address and port announced to the client, or null.</summary>
    IPEndPoint? AnnouncedEndPoint { get; }

    /// <summary>
    /// The unicast subflow's state. The transport decides about a connection on its own control path, just after
    /// accept: the first read waits for that (microseconds; at most 100 ms if the control path is held up, and then
    /// the state says the connection is still queued). While the join is awaited, reading the state (or
    /// <see cref="StateReason"/>, <see cref="JoinedAt"/>) also looks at the socket's subflows (one getsockopt), so it
    /// never lags behind the kernel.
    /// </summary>
    UnicastSubflowState State { get; }

    /// <summary>A sentence saying why the state is what it is (why nothing was announced, why it failed).</summary>
    string StateReason { get; }

    /// <summary>When the connection was accepted.</summary>
    DateTimeOffset AcceptedAt { get; }

    /// <summary>When the unicast address was announced, or null.</summary>
    DateTimeOffset? AnnouncedAt { get; }

    /// <summary>When the client's unicast subflow was established, or null.</summary>
    DateTimeOffset? JoinedAt { get; }

    /// <summary>The connection's current subflows, read from the socket now. Empty once the connection is closed.</summary>
    IReadOnlyList<MptcpSubflow> GetSubflows();

    /// <summary>The connection's MPTCP counters, read from the socket now.</summary>
    MptcpConnectionInfo GetConnectionInfo();

    /// <summary>
    /// Announces the unicast address now (for <see cref="AnnounceOn.Demand"/>, e.g. before a long download or a
    /// WebSocket). Returns true when the address has been announced (now or before); false, with
    /// <see cref="StateReason"/> saying why, when it cannot be. Never throws for path-manager failures.
    /// </summary>
    ValueTask<bool> AnnounceAsync(CancellationToken cancellationToken = default);
}
