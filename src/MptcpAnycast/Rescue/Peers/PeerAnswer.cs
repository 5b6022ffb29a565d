namespace MptcpAnycast.Rescue.Peers;

/// <summary>How one query ended.</summary>
internal enum PeerAnswerKind
{
    /// <summary>The peer owns the flow.</summary>
    Owned,

    /// <summary>The peer does not own the flow.</summary>
    NotOwned,

    /// <summary>No authentic answer before the deadline (lost, late, peer down or not answering).</summary>
    TimedOut,

    /// <summary>Not sent: this POP's outbound query rate was spent.</summary>
    RateLimited,

    /// <summary>Not sent: the socket refused the datagram.</summary>
    SendFailed,
}

/// <summary>One peer's answer to one query.</summary>
internal readonly record struct PeerAnswer(RescuePeer Peer, PeerAnswerKind Kind);

/// <summary>
/// The outcome of asking several peers at once: the owner if one said so before the deadline, and how the other
/// queries ended. When an owner answered, the queries still open are abandoned (their answers count as unmatched),
/// so <see cref="NotOwned"/> + <see cref="Unanswered"/> + <see cref="RateLimited"/> + <see cref="SendFailed"/> + (1
/// if there is an owner) = <see cref="Asked"/>.
/// </summary>
internal readonly record struct PeerLookupResult(RescuePeer? Owner, int Asked, int NotOwned, int Unanswered, int RateLimited, int SendFailed);
