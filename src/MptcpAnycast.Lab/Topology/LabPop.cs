namespace MptcpAnycast.Lab;

/// <summary>An address (and, for a shared address, the port) that a POP announces with ADD_ADDR.</summary>
public sealed record LabEndpoint(string Address, int? Port)
{
    public override string ToString() => Port is int p ? (Address.Contains(':') ? $"[{Address}]:{p}" : $"{Address}:{p}") : Address;
}

/// <summary>
/// One POP of a lab: its namespace, its router-facing interface and addresses, and the unicast addresses it announces
/// (which depend on <see cref="LabUnicast"/>): what a POP server started in it needs to know.
/// </summary>
public sealed record LabPop(
    LabPopId Id,
    LabNamespace Namespace,
    string Interface,
    string Link4,
    string Link6,
    string RouterLink4,
    string RouterLink6,
    int SharedPort,
    IReadOnlyList<LabEndpoint> Announced)
{
    /// <summary>The POP's own IPv4 link address (the next hop for it on the router), without the prefix length.</summary>
    public string Address4 => LabAddressPlan.Host(Link4);

    /// <summary>The POP's own IPv6 link address, without the prefix length.</summary>
    public string Address6 => LabAddressPlan.Host(Link6);

    /// <summary>The router's interface towards this POP: <c>to-popa</c>, <c>to-popb</c>, <c>to-popc</c>.</summary>
    public string RouterInterface => "to-" + Role(Id);

    /// <summary>The role of a POP's namespace (<c>PREFIX-ROLE</c>): <c>popa</c>, <c>popb</c>, <c>popc</c>.</summary>
    public static string Role(LabPopId id) => "pop" + LabNames.Of(id);
}
