using System.Net;

namespace MptcpAnycast.Rescue;

/// <summary>
/// Another POP that serves the same anycast addresses: its name, its unicast addresses (the tunnel's far end and the
/// lookup protocol's peer address) and the key shared with it for the lookup protocol's MACs.
/// </summary>
internal sealed record RescuePeer(string Name, IPAddress? UnicastIPv4, IPAddress? UnicastIPv6, ReadOnlyMemory<byte> Key);
