using System.Net;

namespace MptcpAnycast.Rescue.Agent;

/// <summary>What the agent writes: owner map entries (the kernel's fast path) and the packets it sends itself.</summary>
internal interface IRescueOutput
{
    /// <summary>
    /// From now on the program tunnels <paramref name="flow"/> to <paramref name="owner"/>; <paramref name="waited"/> is
    /// the time since the flow's first miss.
    /// </summary>
    void SetOwner(TcpFlow flow, IPAddress owner, TimeSpan waited);

    /// <summary>Sends a held IP packet (as the client sent it) to <paramref name="owner"/> in an outer header; false when it could not (too large for the path, or no address of the family).</summary>
    bool SendEncapsulated(IPAddress owner, ReadOnlySpan<byte> packet);

    /// <summary>Resets <paramref name="miss"/>'s flow at the client, from the anycast address, with the sequence the client expects.</summary>
    void SendReset(RescueMiss miss);
}
