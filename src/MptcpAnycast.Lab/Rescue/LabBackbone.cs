namespace MptcpAnycast.Lab;

/// <summary>
/// A link of the POPs' own between B and A (as POPs on one provider's backbone have), so that what B tunnels or
/// forwards to A does not cross the router (the Internet, in the lab) a second time. B's routes to A's unicast
/// addresses take it, with static neighbours for those and for the anycast addresses (A holds them on its uplink and
/// lo, and IPv6 answers a solicitation only for an address of the interface it arrives on), and forwarding is on on B's
/// uplink, without which the kernel does not answer the rescue program's route lookup. A takes what arrives on the link
/// into its uplink's ingress (tc mirred), where its program decapsulates, as an agent watches one interface. The link
/// goes with the lab's namespaces.
/// </summary>
public static class LabBackbone
{
    /// <summary>The link's name in both POPs.</summary>
    public const string Interface = "backbone";

    private const string MacA = "02:00:00:00:bb:0a", MacB = "02:00:00:00:bb:0b";

    public static void Add(LabTopology lab)
    {
        ArgumentNullException.ThrowIfNull(lab);
        LabPop a = lab.Pop(LabPopId.A);
        LabNamespace b = lab.Pop(LabPopId.B).Namespace;
        b.Ip("link", "add", Interface, "address", MacB, "type", "veth", "peer", "name", Interface, "address", MacA, "netns", a.Namespace.Name);
        b.Ip("link", "set", Interface, "up");
        a.Namespace.Ip("link", "set", Interface, "up");
        b.Ip("route", "add", a.Address4 + "/32", "dev", Interface);
        b.Ip("-6", "route", "add", a.Address6 + "/128", "dev", Interface);
        foreach (string address in new[] { a.Address4, a.Address6, lab.Plan.Anycast4, lab.Plan.Anycast6 })
        {
            b.Ip(address.Contains(':', StringComparison.Ordinal) ? "-6" : "-4", "neigh", "replace", address, "lladdr", MacA, "dev", Interface, "nud", "permanent");
        }

        b.Sysctl($"net.ipv4.conf.{LabTopology.UplinkInterface}.forwarding", "1");
        b.Sysctl($"net.ipv6.conf.{LabTopology.UplinkInterface}.forwarding", "1");
        a.Namespace.Exec("tc", "qdisc", "add", "dev", Interface, "clsact");
        a.Namespace.Exec("tc", "filter", "add", "dev", Interface, "ingress", "protocol", "all", "u32", "match", "u32", "0", "0",
            "action", "mirred", "ingress", "redirect", "dev", LabTopology.UplinkInterface);
    }
}
