namespace MptcpAnycast.Rescue.Peers;

/// <summary>
/// Why a received datagram was accepted or dropped. The checks run in this order, cheapest and least trusting
/// first: the structure, then the peer named in it, its source address, its MAC, and only then (on authentic bytes)
/// its sequence number.
/// </summary>
internal enum PeerMessageStatus
{
    /// <summary>Authentic, fresh and well formed.</summary>
    Ok,

    /// <summary>Shorter than the smallest message, or than its own header says it is.</summary>
    TooShort,

    /// <summary>Longer than the largest message, or than its own header says it is.</summary>
    TooLong,

    /// <summary>A protocol version this build does not speak.</summary>
    BadVersion,

    /// <summary>Neither a query nor an answer.</summary>
    BadType,

    /// <summary>An address family other than 4 and 6, or an IPv4-mapped IPv6 address (flows keep those as IPv4).</summary>
    BadFlow,

    /// <summary>A query with a verdict, or an answer without one.</summary>
    BadVerdict,

    /// <summary>A sender name that is empty, too long or not made of letters, digits, '-', '.' and '_'.</summary>
    BadName,

    /// <summary>A sender name that is no configured peer (this POP's own name included).</summary>
    UnknownPeer,

    /// <summary>The datagram did not come from the named peer's configured unicast address.</summary>
    WrongSource,

    /// <summary>The MAC does not match: forged, corrupted, or signed with another key.</summary>
    BadMac,

    /// <summary>Authentic, but its sequence number is ahead of this POP's clock by more than the allowed skew.</summary>
    FromFuture,

    /// <summary>Authentic, but this sequence number was accepted before.</summary>
    Replayed,

    /// <summary>Authentic, but older than the replay window: it cannot be told from a replay.</summary>
    BehindWindow,
}
