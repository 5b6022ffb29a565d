using MptcpAnycast.Rescue.Peers;

namespace MptcpAnycast.Rescue.Ownership;

/// <summary>
/// Finds a flow's owner by asking the peers over the lookup protocol (<see cref="PeerChannel"/>): the hint alone
/// first, for at most <c>hintTimeout</c>, then every other peer at once; the first that says "mine" is the owner.
/// The caller's token bounds the whole lookup.
/// </summary>
internal sealed class PeerOwnerLookup(PeerChannel channel, IReadOnlyList<RescuePeer> peers, TimeSpan hintTimeout) : IFlowOwnerLookup
{
    public async ValueTask<RescuePeer?> FindOwnerAsync(TcpFlow flow, RescuePeer? hint, CancellationToken cancellationToken)
    {
        IReadOnlyList<RescuePeer> rest = peers;
        if (hint is not null)
        {
            PeerLookupResult first = await channel.FindOwnerAsync([hint], flow, hintTimeout, cancellationToken).ConfigureAwait(false);
            if (first.Owner is not null)
            {
                return first.Owner;
            }

            rest = [.. peers.Where(p => p.Name != hint.Name)];
        }

        if (rest.Count == 0)
        {
            return null;
        }

        PeerLookupResult result = await channel.FindOwnerAsync(rest, flow, Timeout.InfiniteTimeSpan, cancellationToken).ConfigureAwait(false);
        return result.Owner;
    }
}
