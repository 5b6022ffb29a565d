using System.Globalization;
using System.Text;

namespace MptcpAnycast.Lab;

/// <summary>
/// The anycast lab, the main preset of <see cref="TopologyBuilder"/>: four network namespaces, <c>PREFIX-client</c> —
/// <c>PREFIX-router</c> — <c>PREFIX-popa</c> and <c>PREFIX-popb</c>, and a fifth, <c>PREFIX-popc</c>, when the lab has
/// three POPs (<see cref="LabOptions.Pops"/>). Every POP holds the anycast address on <c>lo</c>; the router routes it to
/// one POP; <see cref="Flip"/> and <see cref="FlipTo"/> move that route. Everything is made with <c>ip</c>,
/// <c>sysctl</c> and <c>nft</c> (or <c>iptables</c>) inside the lab's namespaces, so deleting the namespaces
/// (<see cref="Down(string)"/>) removes it all. Its state (<see cref="LabState"/>) lets a later process flip or remove it.
/// </summary>
public sealed class LabTopology : Topology
{
    /// <summary>The interface of the client and of each POP that leads to the router.</summary>
    public const string UplinkInterface = "to-router";

    private const string NftStrip = "nft reset tcp option mptcp";
    private const string IptablesStrip = "iptables TCPOPTSTRIP --strip-options 30";

    private LabTopology(LabState state)
        : base(state.Options.Prefix, [.. Roles(state.Options).Select(role => new LabNamespace(NamespaceName(state.Options.Prefix, role)))])
    {
        Options = state.Options;
        Active = state.Active;
        StripMechanism = state.StripMechanism;
        Client = Namespaces[0];
        Router = Namespaces[1];
        Pops = [.. PopIds(Options.Pops).Select((id, i) => MakePop(id, Namespaces[2 + i]))];
    }

    /// <summary>The roles of the lab's namespaces, in the order of <see cref="Topology.Namespaces"/>.</summary>
    private static IEnumerable<string> Roles(LabOptions options) => ["client", "router", .. PopIds(options.Pops).Select(LabPop.Role)];

    /// <summary>The POPs of a lab with <paramref name="count"/> of them: A, B (and C).</summary>
    private static IEnumerable<LabPopId> PopIds(int count) => Enum.GetValues<LabPopId>().Take(count);

    public LabOptions Options { get; }

    public LabAddressPlan Plan => Options.Plan;

    /// <summary>The POP the router's anycast route points at.</summary>
    public LabPopId Active { get; private set; }

    /// <summary>How the MPTCP option is stripped (<see cref="LabOptions.StripMptcp"/>): the nft rule or the iptables target; null when it is not.</summary>
    public string? StripMechanism { get; private set; }

    public LabNamespace Client { get; }

    public LabNamespace Router { get; }

    /// <summary>POP A, POP B and, with three POPs, POP C, in that order.</summary>
    public IReadOnlyList<LabPop> Pops { get; }

    /// <summary>Whether the lab has POP <paramref name="id"/> (C only with three POPs).</summary>
    public bool HasPop(LabPopId id) => (int)id >= 0 && (int)id < Pops.Count;

    /// <summary>POP <paramref name="id"/>; throws <see cref="ArgumentOutOfRangeException"/> when the lab does not have it.</summary>
    public LabPop Pop(LabPopId id) => HasPop(id)
        ? Pops[(int)id]
        : throw new ArgumentOutOfRangeException(nameof(id), id, $"lab {Options.Prefix} has no POP {id}; its POPs are {string.Join(", ", Pops.Select(p => p.Id))}");

    /// <summary>
    /// Builds the lab and saves its state. Fails when a lab with the same prefix exists. On any failure, removes what it
    /// made and rethrows.
    /// </summary>
    public static LabTopology Up(LabOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (LabOptions.ValidatePrefix(options.Prefix) is string problem)
        {
            throw new ArgumentException(problem, nameof(options));
        }

        if (LabOptions.ValidatePops(options.Pops) is string pops)
        {
            throw new ArgumentException(pops, nameof(options));
        }

        using var builder = new TopologyBuilder(options.Prefix);
        var lab = new LabTopology(new LabState(options, LabPopId.A, null));
        foreach (string role in Roles(options))
        {
            builder.Add(role);
        }

        try
        {
            lab.Build(builder);
            lab.SaveState();
        }
        catch
        {
            LabState.Delete(options.Prefix);
            throw;
        }

        builder.Build();
        return lab;
    }

    /// <summary>The lab with this prefix, from its state file; null when there is none.</summary>
    public static LabTopology? Load(string prefix) => LabState.Load(prefix) is LabState state ? new LabTopology(state) : null;

    /// <summary>
    /// Moves the anycast route (IPv4 and IPv6) to the next POP in order, A → B → C → A: with two POPs, to the other one.
    /// Returns the POP it points at now.
    /// </summary>
    public LabPopId Flip()
    {
        var next = (LabPopId)(((int)Active + 1) % Pops.Count);
        FlipTo(next);
        return next;
    }

    /// <summary>
    /// Moves the anycast route (IPv4 and IPv6) to POP <paramref name="to"/> and saves the state. When the route points
    /// there already, runs nothing and returns false (a repeated flip is harmless, and the caller can say so); true when
    /// it moved. Throws <see cref="ArgumentOutOfRangeException"/> for a POP the lab does not have.
    /// </summary>
    public bool FlipTo(LabPopId to)
    {
        LabPop pop = Pop(to);
        if (to == Active)
        {
            return false;
        }

        RouteAnycastTo(pop, replace: true);
        Active = to;
        SaveState();
        return true;
    }

    /// <summary>
    /// Removes every namespace whose name starts with <c>PREFIX-</c> (ending the processes still inside it) and the
    /// state file. Safe to run twice and after a crash. Returns the namespaces it deleted.
    /// </summary>
    public static IReadOnlyList<string> Down(string prefix)
    {
        IReadOnlyList<string> names = Remove(prefix);
        LabState.Delete(prefix);
        if (Directory.Exists(LabRescue.DirectoryOf(prefix)))
        {
            Directory.Delete(LabRescue.DirectoryOf(prefix), recursive: true);
        }
        return names;
    }

    /// <summary>Removes this lab; see <see cref="Down(string)"/>.</summary>
    public IReadOnlyList<string> Down() => Down(Options.Prefix);

    /// <summary>Removes this lab (<see cref="Down()"/>).</summary>
    public override void Dispose()
    {
        Down();
        GC.SuppressFinalize(this);
    }

    /// <summary>Topology, routes, MPTCP endpoints and limits, and the MPTCP sockets of every namespace (<c>ss -Mtni</c>).</summary>
    public string Status()
    {
        var text = new StringBuilder();
        text.AppendLine($"lab {Options.Prefix}: {Options}");
        text.AppendLine($"anycast {Plan.Anycast4}, {Plan.Anycast6} -> POP {Active}");
        if (StripMechanism is not null)
        {
            text.AppendLine($"MPTCP option stripped on the router with: {StripMechanism}");
        }

        foreach (LabPop pop in Pops)
        {
            text.AppendLine($"POP {pop.Id} ({pop.Namespace}): link {pop.Link4}, {pop.Link6}; announces {(pop.Announced.Count == 0 ? "nothing" : string.Join(", ", pop.Announced))}");
        }

        IReadOnlyList<string> existing = Existing(Options.Prefix);
        foreach (LabNamespace ns in Namespaces)
        {
            text.AppendLine();
            if (!existing.Contains(ns.Name))
            {
                text.AppendLine($"== {ns}: MISSING");
                continue;
            }

            text.AppendLine($"== {ns}");
            Section(text, "addresses", ns.TryIp("-br", "addr"));
            if (ns == Router)
            {
                Section(text, "routes", ns.TryIp("route"));
                Section(text, "routes (IPv6)", ns.TryIp("-6", "route"));
                if (Options.Unicast == LabUnicast.SharedIpv4)
                {
                    Section(text, "policy rules", ns.TryIp("rule"));
                }
            }
            else
            {
                Section(text, "MPTCP endpoints", ns.TryIp("mptcp", "endpoint", "show"));
                Section(text, "MPTCP limits", ns.TryIp("mptcp", "limits", "show"));
                Section(text, "MPTCP sockets (ss -Mtni)", ns.TryExec("ss", "-Mtni"));
            }
        }

        return text.ToString();
    }

    private LabPop MakePop(LabPopId id, LabNamespace ns)
    {
        (string link4, string link6, string routerLink4, string routerLink6, int sharedPort) = id switch
        {
            LabPopId.A => (Plan.PopA4, Plan.PopA6, Plan.RouterPopA4, Plan.RouterPopA6, Plan.SharedPortA),
            LabPopId.B => (Plan.PopB4, Plan.PopB6, Plan.RouterPopB4, Plan.RouterPopB6, Plan.SharedPortB),
            LabPopId.C => (Plan.PopC4, Plan.PopC6, Plan.RouterPopC4, Plan.RouterPopC6, Plan.SharedPortC),
            _ => throw new ArgumentOutOfRangeException(nameof(id), id, "no such POP"),
        };
        List<LabEndpoint> announced = Options.Unicast switch
        {
            LabUnicast.Own => [new(LabAddressPlan.Host(link4), null), new(LabAddressPlan.Host(link6), null)],
            LabUnicast.SharedIpv4 => [new(Plan.Shared4, sharedPort), new(LabAddressPlan.Host(link6), null)],
            _ => [new(LabAddressPlan.Host(link6), null)],
        };
        return new LabPop(id, ns, UplinkInterface, link4, link6, routerLink4, routerLink6, sharedPort, announced);
    }

    private void Build(TopologyBuilder builder)
    {
        builder.Link(Router, "to-client", Client, UplinkInterface);
        Address(Router, "to-client", Plan.RouterClient4, Plan.RouterClient6);
        Address(Client, UplinkInterface, Plan.Client4, Plan.Client6);
        DefaultRoutes(Client, Plan.RouterClient4, Plan.RouterClient6);
        foreach (LabPop pop in Pops)
        {
            LabNamespace ns = pop.Namespace;
            string routerSide = pop.RouterInterface;
            builder.Link(Router, routerSide, ns, pop.Interface);
            Address(Router, routerSide, pop.RouterLink4, pop.RouterLink6);
            Address(ns, pop.Interface, pop.Link4, pop.Link6);
            DefaultRoutes(ns, pop.RouterLink4, pop.RouterLink6);
            ns.Ip("addr", "add", Plan.Anycast4 + "/32", "dev", "lo");
            ns.Ip("addr", "add", Plan.Anycast6 + "/128", "dev", "lo", "nodad");
            if (Options.Unicast == LabUnicast.SharedIpv4)
            {
                ns.Ip("addr", "add", Plan.Shared4 + "/32", "dev", "lo");
            }

            // A POP is a host, not a router, whatever the machine does: a new namespace copies the host's IPv4
            // settings, and with forwarding on the rescue program's route lookup would be answered on some machines only.
            ns.Sysctl("net.ipv4.ip_forward", "0");
            ns.Sysctl("net.ipv6.conf.all.forwarding", "0");

            // The C flag: no joins to the anycast address and port; joins go to the announced unicast.
            ns.Sysctl("net.mptcp.enabled", "1");
            ns.Sysctl("net.mptcp.allow_join_initial_addr_port", "0");
            ns.Sysctl("net.mptcp.path_manager", Options.PathManager == LabPathManager.Kernel ? "kernel" : "userspace");
            if (Options.PathManager == LabPathManager.Kernel)
            {
                foreach (LabEndpoint endpoint in pop.Announced)
                {
                    string[] port = endpoint.Port is int p ? ["port", p.ToString(CultureInfo.InvariantCulture)] : [];
                    string[] dev = endpoint.Port is null ? ["dev", pop.Interface] : [];
                    ns.Ip(["mptcp", "endpoint", "add", endpoint.Address, .. port, .. dev, "signal"]);
                }
            }
        }

        Router.Sysctl("net.ipv4.ip_forward", "1");
        Router.Sysctl("net.ipv6.conf.all.forwarding", "1");
        Router.Sysctl("net.ipv4.conf.all.rp_filter", "0");
        Router.Sysctl("net.ipv4.conf.default.rp_filter", "0");
        RouteAnycastTo(Pop(LabPopId.A), replace: false);

        Client.Sysctl("net.mptcp.enabled", "1");
        switch (Options.Client)
        {
            case LabClientLimits.AcceptAddAddr:
                Client.Ip("mptcp", "limits", "set", "add_addr_accepted", "1");
                break;
            case LabClientLimits.SubflowEndpoint:
                Address(Client, UplinkInterface, Plan.ClientSecond4, Plan.ClientSecond6);
                Client.Ip("mptcp", "endpoint", "add", LabAddressPlan.Host(Plan.ClientSecond4), "dev", UplinkInterface, "subflow");
                Client.Ip("mptcp", "endpoint", "add", LabAddressPlan.Host(Plan.ClientSecond6), "dev", UplinkInterface, "subflow");
                break;
        }

        if (Options.Unicast == LabUnicast.SharedIpv4)
        {
            SharedAddressForwarding();
        }

        if (Options.Nat)
        {
            string interfaces = string.Join(", ", Pops.Select(p => $"\"{p.RouterInterface}\""));
            Router.Nft($$"""
                table inet mptcp_lab_nat {
                  chain postrouting {
                    type nat hook postrouting priority srcnat; policy accept;
                    oifname { {{interfaces}} } masquerade
                  }
                }
                """);
        }

        if (Options.Firewall)
        {
            string v4 = string.Join(", ", Pops.Select(p => p.Address4).Append(Plan.Shared4));
            string v6 = string.Join(", ", Pops.Select(p => p.Address6));
            Router.Nft($$"""
                table inet mptcp_lab_firewall {
                  chain forward {
                    type filter hook forward priority filter; policy accept;
                    ip daddr { {{v4}} } meta l4proto tcp drop
                    ip6 daddr { {{v6}} } meta l4proto tcp drop
                  }
                }
                """);
        }

        if (Options.StripMptcp)
        {
            StripMechanism = StripMptcpOption();
        }
    }

    private void SharedAddressForwarding()
    {
        // Forward by destination port without rewriting the address: mark, then a routing table per POP.
        string rules = string.Join(Environment.NewLine, Pops.Select(p =>
            $"    ip daddr {Plan.Shared4} tcp dport {p.SharedPort} meta mark set {SharedMark(p.Id)}"));
        Router.Nft($$"""
            table inet mptcp_lab_shared {
              chain prerouting {
                type filter hook prerouting priority mangle; policy accept;
            {{rules}}
              }
            }
            """);
        foreach (LabPop pop in Pops)
        {
            string mark = SharedMark(pop.Id).ToString(CultureInfo.InvariantCulture);
            string table = (100 + SharedMark(pop.Id)).ToString(CultureInfo.InvariantCulture);
            Router.Ip("rule", "add", "fwmark", mark, "lookup", table, "pref", "10" + mark);
            Router.Ip("route", "add", Plan.Shared4 + "/32", "via", pop.Address4, "table", table);
        }
    }

    /// <summary>The firewall mark of a POP's shared port: 1, 2, 3 for A, B, C; its routing table is 100 + the mark.</summary>
    private static int SharedMark(LabPopId id) => (int)id + 1;

    /// <summary>Strips TCP option 30 on the router: nft <c>reset tcp option mptcp</c> (kernel 5.17+, nft 1.0.1+), else iptables TCPOPTSTRIP.</summary>
    private string StripMptcpOption()
    {
        CommandResult nft = Router.TryNft("""
            table inet mptcp_lab_strip {
              chain forward {
                type filter hook forward priority mangle; policy accept;
                meta l4proto tcp reset tcp option mptcp
              }
            }
            """);
        if (nft.Succeeded)
        {
            return NftStrip;
        }

        foreach (string tool in (string[])["iptables", "ip6tables"])
        {
            Router.Exec(tool, "-t", "mangle", "-A", "FORWARD", "-p", "tcp", "-j", "TCPOPTSTRIP", "--strip-options", "30");
        }

        return IptablesStrip;
    }

    private void RouteAnycastTo(LabPop pop, bool replace)
    {
        string verb = replace ? "replace" : "add";
        Router.Ip("route", verb, Plan.Anycast4 + "/32", "via", pop.Address4);
        Router.Ip("-6", "route", verb, Plan.Anycast6 + "/128", "via", pop.Address6);
    }

    private void SaveState() => new LabState(Options, Active, StripMechanism).Save();

    private static void Address(LabNamespace ns, string dev, string cidr4, string cidr6)
    {
        ns.Ip("addr", "add", cidr4, "dev", dev);
        ns.Ip("addr", "add", cidr6, "dev", dev, "nodad");
    }

    private static void DefaultRoutes(LabNamespace ns, string gateway4, string gateway6)
    {
        ns.Ip("route", "add", "default", "via", LabAddressPlan.Host(gateway4));
        ns.Ip("-6", "route", "add", "default", "via", LabAddressPlan.Host(gateway6));
    }

    private static void Section(StringBuilder text, string title, CommandResult result)
    {
        text.AppendLine($"-- {title}");
        string body = result.Output.TrimEnd();
        text.AppendLine(body.Length == 0 ? "   (none)" : string.Join(Environment.NewLine, body.Split('\n').Select(l => "   " + l)));
    }
}
