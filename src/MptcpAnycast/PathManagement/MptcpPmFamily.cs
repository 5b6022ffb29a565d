using MptcpAnycast.Interop;
using MptcpAnycast.Netlink;
using Polly;
using Polly.Retry;
using static MptcpAnycast.Interop.MptcpPmConstants;

namespace MptcpAnycast.PathManagement;

/// <summary>
/// The <c>mptcp_pm</c> generic-netlink family as the kernel registered it: its message type and the id of its
/// <c>mptcp_pm_events</c> multicast group, looked up with <c>CTRL_CMD_GETFAMILY</c>. Both are global (not per network
/// namespace) and fixed until the module is reloaded, so the answer for the real family is cached for the process.
/// </summary>
internal readonly record struct MptcpPmFamily(ushort FamilyId, uint EventGroupId)
{
    private static readonly ResiliencePipeline s_lookup = new ResiliencePipelineBuilder()
        .AddRetry(new RetryStrategyOptions
        {
            ShouldHandle = new PredicateBuilder().Handle<PathManagerException>(e => e.Kind == PathManagerErrorKind.Transient),
            MaxRetryAttempts = 3,
            Delay = TimeSpan.FromMilliseconds(50),
            BackoffType = DelayBackoffType.Exponential,
        })
        .Build();

    private static MptcpPmFamily? s_cached;

    /// <summary>Looks the family up (retrying transient errors), or returns the cached answer.</summary>
    /// <exception cref="PathManagerException">No such family (no MPTCP), or netlink failed.</exception>
    public static MptcpPmFamily Resolve(NetlinkCommandChannel channel, string familyName, CancellationToken cancellationToken)
    {
        bool cacheable = familyName == MPTCP_PM_NAME;
        if (cacheable && s_cached is { } cached)
        {
            return cached;
        }

        MptcpPmFamily family = s_lookup.Execute(static (state, ct) =>
        {
            ct.ThrowIfCancellationRequested();
            return Lookup(state.channel, state.familyName);
        }, (channel, familyName), cancellationToken);
        if (cacheable)
        {
            s_cached = family;
        }

        return family;
    }

    private static MptcpPmFamily Lookup(NetlinkCommandChannel channel, string familyName)
    {
        List<byte[]> replies;
        try
        {
            replies = channel.Exchange("CTRL_CMD_GETFAMILY", familyName, static (b, s, name) => MptcpPmMessages.WriteGetFamily(b, s, name));
        }
        catch (NetlinkException ex) when (ex.Errno == Errno.ENOENT)
        {
            throw new PathManagerException("CTRL_CMD_GETFAMILY", ex.Errno, ex.KernelMessage,
                $"the kernel has no '{familyName}' generic netlink family: MPTCP is not available here (Linux 5.7+ built with CONFIG_MPTCP is needed)", ex);
        }
        catch (NetlinkException ex)
        {
            throw PathManagerException.From(ex, "CTRL_CMD_GETFAMILY");
        }

        IReadOnlyList<(ushort FamilyId, uint GroupId)> families = PathManagerClient.Decode("CTRL_CMD_GETFAMILY", replies,
            static p => MptcpPmMessages.ReadFamily(p, MPTCP_PM_EV_GRP_NAME));
        return families.Count > 0
            ? new MptcpPmFamily(families[0].FamilyId, families[0].GroupId)
            : throw new PathManagerException("CTRL_CMD_GETFAMILY", Errno.EBADMSG, null, "the kernel acknowledged without describing the family");
    }
}
