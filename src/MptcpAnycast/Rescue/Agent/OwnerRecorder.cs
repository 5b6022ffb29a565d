using System.Net;
using MptcpAnycast.Rescue.Bpf;

namespace MptcpAnycast.Rescue.Agent;

/// <summary>
/// Writes a found owner into the program's owner map, unless a connection on the flow's tuple opened on this host
/// while the owner was looked up. The program reads an entry before its socket lookup (for flows its owner hint
/// flags), so such an entry would send the new local connection's segments to the old owner. A SYN arriving after the
/// write deletes the entry in the program itself; one arriving before it found nothing to delete, which is what the
/// check after the write is for.
/// </summary>
internal sealed class OwnerRecorder(RescueDataplane dataplane, Func<TcpFlow, bool> openedHere)
{
    /// <summary>Records <paramref name="owner"/> for <paramref name="flow"/>; false when the tuple is local again and the entry was taken back.</summary>
    public bool Record(TcpFlow flow, IPAddress owner)
    {
        dataplane.SetOwner(flow, owner);
        if (!openedHere(flow))
        {
            return true;
        }

        dataplane.RemoveOwner(flow);
        return false;
    }

    /// <summary>
    /// Takes back every entry whose tuple has a connection on this host, once the program is on its hook: an owner map
    /// pinned by an earlier agent may hold the tuple of a connection that opened while no program was attached, whose
    /// SYN therefore deleted nothing. The count taken back.
    /// </summary>
    public int ForgetLocal()
    {
        int forgotten = 0;
        foreach ((TcpFlow flow, _) in dataplane.ListOwners())
        {
            if (openedHere(flow) && dataplane.RemoveOwner(flow))
            {
                forgotten++;
            }
        }

        return forgotten;
    }
}
