namespace MptcpAnycast.Rescue.Ownership;

/// <summary>
/// Finds which POP owns a TCP flow that reached this POP although this POP's kernel has no socket for it. The answer
/// comes from the owner's own socket table (asking the peers), so nothing is written anywhere when a connection
/// starts; a replicated store could answer instead behind the same interface (docs/rescue.md).
/// </summary>
internal interface IFlowOwnerLookup
{
    /// <summary>
    /// The peer that owns <paramref name="flow"/>, or null when every peer asked says it does not, or none answered
    /// before <paramref name="cancellationToken"/> ends the lookup. <paramref name="hint"/>, when not null, is asked
    /// first (the owner last found for the client's prefix).
    /// </summary>
    ValueTask<RescuePeer?> FindOwnerAsync(TcpFlow flow, RescuePeer? hint, CancellationToken cancellationToken);
}
