using System.Globalization;
using System.Net;

namespace MptcpAnycast.Lab;

/// <summary>What a <see cref="SinglePopTopology"/> looks like besides its fixed addresses.</summary>
public sealed record SinglePopOptions
{
    /// <summary>Namespace names start with <c>PREFIX-</c>. Default: a fresh <see cref="LabPrefix.New"/>.</summary>
    public string? Prefix { get; init; }

    /// <summary>The server's <c>net.mptcp.path_manager</c>. Default <see cref="LabPathManager.Userspace"/>.</summary>
    public LabPathManager ServerPathManager { get; init; } = LabPathManager.Userspace;

    /// <summary>The client's <c>add_addr_accepted</c> limit (0 is the kernel's default). Default 1.</summary>
    public int ClientAddAddrAccepted { get; init; } = 1;

    /// <summary>A second client address (/24 on the link) with a <c>subflow</c> endpoint (the C-flag case), or null. Default null.</summary>
    public IPAddress? ClientSubflowEndpoint { get; init; }
}

/// <summary>
/// A preset of <see cref="TopologyBuilder"/>: a client and one POP (<c>PREFIX-client</c>, <c>PREFIX-server</c>) joined by
/// one link, no router. The server holds the anycast addresses on <c>lo</c> (203.0.113.1, 2001:db8:a::1) and its
/// unicast addresses on the link (192.0.2.2, 2001:db8:1::2), with the C flag set and limits of 2 subflows; the client
/// (192.0.2.1, 2001:db8:1::1) routes the anycast addresses to it. For transport tests that need no route change.
/// </summary>
public sealed class SinglePopTopology : Topology
{
    public static readonly IPAddress Anycast4 = IPAddress.Parse("203.0.113.1");
    public static readonly IPAddress Anycast6 = IPAddress.Parse("2001:db8:a::1");
    public static readonly IPAddress Unicast4 = IPAddress.Parse("192.0.2.2");
    public static readonly IPAddress Unicast6 = IPAddress.Parse("2001:db8:1::2");
    public static readonly IPAddress Client4 = IPAddress.Parse("192.0.2.1");
    public static readonly IPAddress Client6 = IPAddress.Parse("2001:db8:1::1");

    /// <summary>The client's interface towards the server.</summary>
    public const string ClientInterface = "to-server";

    /// <summary>The server's interface towards the client.</summary>
    public const string ServerInterface = "to-client";

    private SinglePopTopology(string prefix, IReadOnlyList<LabNamespace> namespaces)
        : base(prefix, namespaces)
    {
    }

    public LabNamespace Client => Namespaces[0];

    public LabNamespace Server => Namespaces[1];

    /// <summary>Builds the two namespaces; on any failure removes what it made and rethrows.</summary>
    public static SinglePopTopology Create(SinglePopOptions? options = null)
    {
        options ??= new SinglePopOptions();
        string prefix = options.Prefix ?? LabPrefix.New();
        using var builder = new TopologyBuilder(prefix);
        LabNamespace client = builder.Add("client");
        LabNamespace server = builder.Add("server");
        builder.Link(client, ClientInterface, server, ServerInterface);

        client.Ip("addr", "add", $"{Client4}/24", "dev", ClientInterface);
        client.Ip("addr", "add", $"{Client6}/64", "dev", ClientInterface, "nodad");
        client.Ip("route", "add", $"{Anycast4}/32", "via", Unicast4.ToString());
        client.Ip("-6", "route", "add", $"{Anycast6}/128", "via", Unicast6.ToString());
        client.Ip("mptcp", "limits", "set", "add_addr_accepted", options.ClientAddAddrAccepted.ToString(CultureInfo.InvariantCulture), "subflows", "2");
        if (options.ClientSubflowEndpoint is IPAddress second)
        {
            client.Ip("addr", "add", $"{second}/24", "dev", ClientInterface);
            client.Ip("mptcp", "endpoint", "add", second.ToString(), "dev", ClientInterface, "subflow");
        }

        server.Ip("addr", "add", $"{Unicast4}/24", "dev", ServerInterface);
        server.Ip("addr", "add", $"{Unicast6}/64", "dev", ServerInterface, "nodad");
        server.Ip("addr", "add", $"{Anycast4}/32", "dev", "lo");
        server.Ip("addr", "add", $"{Anycast6}/128", "dev", "lo", "nodad");
        server.Sysctl("net.mptcp.path_manager", options.ServerPathManager == LabPathManager.Kernel ? "kernel" : "userspace");
        server.Sysctl("net.mptcp.allow_join_initial_addr_port", "0");
        server.Ip("mptcp", "limits", "set", "subflows", "2", "add_addr_accepted", "0");
        return new SinglePopTopology(prefix, builder.Build());
    }
}
