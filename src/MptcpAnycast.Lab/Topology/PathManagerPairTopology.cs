using System.Net;

namespace MptcpAnycast.Lab;

/// <summary>
/// A preset of <see cref="TopologyBuilder"/> for path-manager tests: two namespaces (<c>PREFIX-server</c>,
/// <c>PREFIX-client</c>) on one link. The server holds 192.0.2.1 (the "anycast" address clients connect to) and
/// 198.51.100.1 (the unicast address it announces) and runs the userspace path manager with the C flag set; the
/// client holds 192.0.2.2, reaches 198.51.100.0/24 over the link and accepts one ADD_ADDR.
/// </summary>
public sealed class PathManagerPairTopology : Topology
{
    public static readonly IPAddress Anycast = IPAddress.Parse("192.0.2.1");
    public static readonly IPAddress Unicast = IPAddress.Parse("198.51.100.1");
    public static readonly IPAddress ClientAddress = IPAddress.Parse("192.0.2.2");

    private PathManagerPairTopology(string prefix, IReadOnlyList<LabNamespace> namespaces)
        : base(prefix, namespaces)
    {
    }

    public LabNamespace Server => Namespaces[0];

    public LabNamespace Client => Namespaces[1];

    /// <summary>Builds the two namespaces (default prefix: a fresh <see cref="LabPrefix.New"/>); on any failure removes what it made.</summary>
    public static PathManagerPairTopology Create(string? prefix = null)
    {
        prefix ??= LabPrefix.New();
        using var builder = new TopologyBuilder(prefix);
        LabNamespace server = builder.Add("server");
        LabNamespace client = builder.Add("client");
        builder.Link(server, "vs", client, "vc");
        server.Ip("addr", "add", $"{Anycast}/24", "dev", "vs");
        server.Ip("addr", "add", $"{Unicast}/24", "dev", "vs");
        client.Ip("addr", "add", $"{ClientAddress}/24", "dev", "vc");
        client.Ip("route", "add", "198.51.100.0/24", "dev", "vc");
        server.Sysctl("net.mptcp.path_manager", "userspace");
        server.Sysctl("net.mptcp.allow_join_initial_addr_port", "0");
        client.Ip("mptcp", "limits", "set", "add_addr_accepted", "1", "subflows", "2");
        return new PathManagerPairTopology(prefix, builder.Build());
    }
}
