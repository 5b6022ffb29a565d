namespace MptcpAnycast.Rescue.Bpf;

/// <summary>The rescue program's counters (<c>enum rescue_counter</c> in rescue.bpf.c), summed over CPUs.</summary>
internal sealed class RescueDataplaneCounters(IReadOnlyList<ulong> values)
{
    /// <summary>The counters' names, in the order of <c>enum rescue_counter</c>.</summary>
    public static readonly string[] Names =
    [
        "not_anycast", "local_syn", "local_socket", "local_syncookie", "tunnelled", "decapsulated", "miss",
        "miss_unreported", "miss_rst", "foreign_tunnel", "icmp_forwarded", "mss_clamped", "error", "malformed",
        "owner_forgotten", "tunnel_by_uplink", "tunnel_unrouted",
    ];

    public static int Count => Names.Length;

    public ulong NotAnycast => values[0];
    public ulong LocalSyn => values[1];
    public ulong LocalSocket => values[2];
    public ulong LocalSyncookie => values[3];
    public ulong Tunnelled => values[4];
    public ulong Decapsulated => values[5];
    public ulong Miss => values[6];
    public ulong MissUnreported => values[7];
    public ulong MissRst => values[8];
    public ulong ForeignTunnel => values[9];
    public ulong IcmpForwarded => values[10];
    public ulong MssClamped => values[11];
    public ulong Error => values[12];
    public ulong Malformed => values[13];
    public ulong OwnerForgotten => values[14];
    public ulong TunnelByUplink => values[15];
    public ulong TunnelUnrouted => values[16];

    public ulong this[int index] => values[index];

    public IEnumerable<(string Name, ulong Value)> All() => Names.Select((name, i) => (name, values[i]));
}
