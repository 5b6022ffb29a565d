using System.Diagnostics;
using System.Text;

namespace MptcpAnycast.Cli.Lab;

/// <summary>
/// The anycast lab: four network namespaces, <c>PREFIX-client</c> — <c>PREFIX-router</c> — <c>PREFIX-popa</c> and
/// <c>PREFIX-popb</c>, joined by veth pairs made directly inside the namespaces (nothing is added to the root
/// namespace). Both POPs hold the anycast address on <c>lo</c>; the router routes it to one POP; <see cref="Flip"/>
/// moves that route. Everything is made with <c>ip</c>, <c>sysctl</c> and <c>nft</c> (or <c>iptables</c>) inside the
/// lab's namespaces, so deleting the namespaces (<see cref="Down(string)"/>) removes it all.
/// </summary>
internal sealed class LabTopology
{
    /// <summary>The interface of the client and of each POP that leads to the router.</summary>
    public const string UplinkInterface = "to-router";

    private const string NftStrip = "nft reset tcp option mptcp";
    private const string IptablesStrip = "iptables TCPOPTSTRIP --strip-options 30";
    private const int SharedMarkA = 1;
    private const int SharedMarkB = 2;
    private const int SharedTableA = 101;
    private const int SharedTableB = 102;

    private LabTopology(LabState state)
    {
        Options = state.Options;
        Active = state.Active;
        StripMechanism = state.StripMechanism;
        LabAddressPlan plan = Options.Plan;
        ClientNamespace = NamespaceName(Options.Prefix, "client");
        RouterNamespace = NamespaceName(Options.Prefix, "router");
        Pops =
        [
            MakePop(LabPopId.A, plan.PopA4, plan.PopA6, plan.RouterPopA4, plan.RouterPopA6, plan.SharedPortA),
            MakePop(LabPopId.B, plan.PopB4, plan.PopB6, plan.RouterPopB4, plan.RouterPopB6, plan.SharedPortB),
        ];
    }

    public LabOptions Options { get; }

    public LabAddressPlan Plan => Options.Plan;

    /// <summary>The POP the router's anycast route points at.</summary>
    public LabPopId Active { get; private set; }

    /// <summary>How the MPTCP option is stripped (<see cref="LabOptions.StripMptcp"/>): the nft rule or the iptables target; null when it is not.</summary>
    public string? StripMechanism { get; private set; }

    public string ClientNamespace { get; }

    public string RouterNamespace { get; }

    /// <summary>POP A and POP B, in that order.</summary>
    public IReadOnlyList<LabPop> Pops { get; }

    public IEnumerable<string> Namespaces => [ClientNamespace, RouterNamespace, .. Pops.Select(p => p.Namespace)];

    public LabPop Pop(LabPopId id) => Pops[(int)id];

    public static string NamespaceName(string prefix, string role) => $"{prefix}-{role}";

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

        if (ExistingNamespaces(options.Prefix).Count > 0)
        {
            throw new InvalidOperationException($"a lab with prefix '{options.Prefix}' exists; run 'mptcp-anycast lab down --prefix {options.Prefix}' first");
        }

        var lab = new LabTopology(new LabState(options, LabPopId.A, null));
        try
        {
            lab.Build();
            lab.SaveState();
            return lab;
        }
        catch
        {
            Down(options.Prefix);
            throw;
        }
    }

    /// <summary>The lab with this prefix, from its state file; null when there is none.</summary>
    public static LabTopology? Load(string prefix) => LabState.Load(prefix) is LabState state ? new LabTopology(state) : null;

    /// <summary>Moves the anycast route (IPv4 and IPv6) to the other POP; returns the POP it points at now.</summary>
    public LabPopId Flip()
    {
        LabPopId next = Active == LabPopId.A ? LabPopId.B : LabPopId.A;
        RouteAnycastTo(Pop(next), replace: true);
        Active = next;
        SaveState();
        return next;
    }

    /// <summary>
    /// Removes every namespace whose name starts with <c>PREFIX-</c> (ending the processes still inside it) and the
    /// state file. Safe to run twice and after a crash. Returns the namespaces it deleted.
    /// </summary>
    public static IReadOnlyList<string> Down(string prefix)
    {
        List<string> names = ExistingNamespaces(prefix);
        foreach (string name in names)
        {
            KillProcessesIn(name);
            CommandRunner.TryRun("ip", ["netns", "del", name]);
        }

        LabState.Delete(prefix);
        return names;
    }

    /// <summary>Removes this lab; see <see cref="Down(string)"/>.</summary>
    public IReadOnlyList<string> Down() => Down(Options.Prefix);

    /// <summary>Runs <paramref name="file"/> with <paramref name="arguments"/> inside <paramref name="ns"/> (<c>ip netns exec</c>) and returns its output; throws when it fails.</summary>
    public static string Exec(string ns, string file, params string[] arguments) =>
        CommandRunner.Run("ip", ["netns", "exec", ns, file, .. arguments]);

    /// <summary>Like <see cref="Exec"/>, but returns the exit code instead of throwing.</summary>
    public static CommandResult TryExec(string ns, string file, params string[] arguments) =>
        CommandRunner.TryRun("ip", ["netns", "exec", ns, file, .. arguments]);

    /// <summary>
    /// Starts a long-running process inside <paramref name="ns"/> (<c>ip netns exec NS FILE ARGS</c>) with its output
    /// redirected; the caller owns it. This is the hook for <c>lab demo</c> (a HelloAnycast server in each POP).
    /// <see cref="Down(string)"/> ends any such process that is still running.
    /// </summary>
    public static Process StartIn(string ns, string file, IEnumerable<string> arguments)
    {
        var psi = new ProcessStartInfo("ip")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string argument in (string[])["netns", "exec", ns, file, .. arguments])
        {
            psi.ArgumentList.Add(argument);
        }

        return Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file} in {ns}");
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

        List<string> existing = ExistingNamespaces(Options.Prefix);
        foreach (string ns in Namespaces)
        {
            text.AppendLine();
            if (!existing.Contains(ns))
            {
                text.AppendLine($"== {ns}: MISSING");
                continue;
            }

            text.AppendLine($"== {ns}");
            Section(text, "addresses", CommandRunner.TryRun("ip", ["-n", ns, "-br", "addr"]));
            if (ns == RouterNamespace)
            {
                Section(text, "routes", CommandRunner.TryRun("ip", ["-n", ns, "route"]));
                Section(text, "routes (IPv6)", CommandRunner.TryRun("ip", ["-n", ns, "-6", "route"]));
                if (Options.Unicast == LabUnicast.SharedIpv4)
                {
                    Section(text, "policy rules", CommandRunner.TryRun("ip", ["-n", ns, "rule"]));
                }
            }
            else
            {
                Section(text, "MPTCP endpoints", CommandRunner.TryRun("ip", ["-n", ns, "mptcp", "endpoint", "show"]));
                Section(text, "MPTCP limits", CommandRunner.TryRun("ip", ["-n", ns, "mptcp", "limits", "show"]));
                Section(text, "MPTCP sockets (ss -Mtni)", TryExec(ns, "ss", "-Mtni"));
            }
        }

        return text.ToString();
    }

    /// <summary>Namespaces (from <c>ip netns list</c>) whose name starts with <c>PREFIX-</c>.</summary>
    public static List<string> ExistingNamespaces(string prefix)
    {
        CommandResult list = CommandRunner.TryRun("ip", ["netns", "list"]);
        if (!list.Succeeded)
        {
            return [];
        }

        return list.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(line => line.Split(' ')[0])
            .Where(name => name.StartsWith(prefix + "-", StringComparison.Ordinal))
            .ToList();
    }

    private LabPop MakePop(LabPopId id, string link4, string link6, string routerLink4, string routerLink6, int sharedPort)
    {
        List<LabEndpoint> announced = Options.Unicast switch
        {
            LabUnicast.Own => [new(LabAddressPlan.Host(link4), null), new(LabAddressPlan.Host(link6), null)],
            LabUnicast.SharedIpv4 => [new(Plan.Shared4, sharedPort), new(LabAddressPlan.Host(link6), null)],
            _ => [new(LabAddressPlan.Host(link6), null)],
        };
        string ns = NamespaceName(Options.Prefix, id == LabPopId.A ? "popa" : "popb");
        return new LabPop(id, ns, UplinkInterface, link4, link6, routerLink4, routerLink6, sharedPort, announced);
    }

    private void Build()
    {
        foreach (string ns in Namespaces)
        {
            CommandRunner.Run("ip", ["netns", "add", ns]);
            Ip(ns, "link", "set", "lo", "up");

            // No duplicate address detection: link-local addresses would stay tentative for a second or two after the
            // links come up, and the first IPv6 packets (an IPv6 join right after an IPv4 handshake) would wait for it.
            Sysctl(ns, "net.ipv6.conf.all.accept_dad", "0");
            Sysctl(ns, "net.ipv6.conf.default.accept_dad", "0");
        }

        // Links, made inside the namespaces: nothing appears in the root namespace, even for a moment.
        Veth(RouterNamespace, "to-client", ClientNamespace, UplinkInterface);
        Address(RouterNamespace, "to-client", Plan.RouterClient4, Plan.RouterClient6);
        Address(ClientNamespace, UplinkInterface, Plan.Client4, Plan.Client6);
        DefaultRoutes(ClientNamespace, Plan.RouterClient4, Plan.RouterClient6);
        foreach (LabPop pop in Pops)
        {
            string routerSide = pop.Id == LabPopId.A ? "to-popa" : "to-popb";
            Veth(RouterNamespace, routerSide, pop.Namespace, pop.Interface);
            Address(RouterNamespace, routerSide, pop.RouterLink4, pop.RouterLink6);
            Address(pop.Namespace, pop.Interface, pop.Link4, pop.Link6);
            DefaultRoutes(pop.Namespace, pop.RouterLink4, pop.RouterLink6);
            Ip(pop.Namespace, "addr", "add", Plan.Anycast4 + "/32", "dev", "lo");
            Ip(pop.Namespace, "addr", "add", Plan.Anycast6 + "/128", "dev", "lo", "nodad");
            if (Options.Unicast == LabUnicast.SharedIpv4)
            {
                Ip(pop.Namespace, "addr", "add", Plan.Shared4 + "/32", "dev", "lo");
            }

            // The C flag: no joins to the anycast address and port; joins go to the announced unicast.
            Sysctl(pop.Namespace, "net.mptcp.enabled", "1");
            Sysctl(pop.Namespace, "net.mptcp.allow_join_initial_addr_port", "0");
            Sysctl(pop.Namespace, "net.mptcp.path_manager", Options.PathManager == LabPathManager.Kernel ? "kernel" : "userspace");
            if (Options.PathManager == LabPathManager.Kernel)
            {
                foreach (LabEndpoint endpoint in pop.Announced)
                {
                    string[] port = endpoint.Port is int p ? ["port", p.ToString(System.Globalization.CultureInfo.InvariantCulture)] : [];
                    string[] dev = endpoint.Port is null ? ["dev", pop.Interface] : [];
                    Ip(pop.Namespace, ["mptcp", "endpoint", "add", endpoint.Address, .. port, .. dev, "signal"]);
                }
            }
        }

        Sysctl(RouterNamespace, "net.ipv4.ip_forward", "1");
        Sysctl(RouterNamespace, "net.ipv6.conf.all.forwarding", "1");
        Sysctl(RouterNamespace, "net.ipv4.conf.all.rp_filter", "0");
        Sysctl(RouterNamespace, "net.ipv4.conf.default.rp_filter", "0");
        RouteAnycastTo(Pop(LabPopId.A), replace: false);

        Sysctl(ClientNamespace, "net.mptcp.enabled", "1");
        switch (Options.Client)
        {
            case LabClientLimits.AcceptAddAddr:
                Ip(ClientNamespace, "mptcp", "limits", "set", "add_addr_accepted", "1");
                break;
            case LabClientLimits.SubflowEndpoint:
                Address(ClientNamespace, UplinkInterface, Plan.ClientSecond4, Plan.ClientSecond6);
                Ip(ClientNamespace, "mptcp", "endpoint", "add", LabAddressPlan.Host(Plan.ClientSecond4), "dev", UplinkInterface, "subflow");
                Ip(ClientNamespace, "mptcp", "endpoint", "add", LabAddressPlan.Host(Plan.ClientSecond6), "dev", UplinkInterface, "subflow");
                break;
        }

        if (Options.Unicast == LabUnicast.SharedIpv4)
        {
            SharedAddressForwarding();
        }

        if (Options.Nat)
        {
            Nft(RouterNamespace, """
                table inet mptcp_lab_nat {
                  chain postrouting {
                    type nat hook postrouting priority srcnat; policy accept;
                    oifname { "to-popa", "to-popb" } masquerade
                  }
                }
                """);
        }

        if (Options.Firewall)
        {
            string v4 = string.Join(", ", Pops.Select(p => p.Address4).Append(Plan.Shared4));
            string v6 = string.Join(", ", Pops.Select(p => p.Address6));
            Nft(RouterNamespace, $$"""
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
            $"    ip daddr {Plan.Shared4} tcp dport {p.SharedPort} meta mark set {(p.Id == LabPopId.A ? SharedMarkA : SharedMarkB)}"));
        Nft(RouterNamespace, $$"""
            table inet mptcp_lab_shared {
              chain prerouting {
                type filter hook prerouting priority mangle; policy accept;
            {{rules}}
              }
            }
            """);
        foreach (LabPop pop in Pops)
        {
            string mark = (pop.Id == LabPopId.A ? SharedMarkA : SharedMarkB).ToString(System.Globalization.CultureInfo.InvariantCulture);
            string table = (pop.Id == LabPopId.A ? SharedTableA : SharedTableB).ToString(System.Globalization.CultureInfo.InvariantCulture);
            Ip(RouterNamespace, "rule", "add", "fwmark", mark, "lookup", table, "pref", "10" + mark);
            Ip(RouterNamespace, "route", "add", Plan.Shared4 + "/32", "via", pop.Address4, "table", table);
        }
    }

    /// <summary>Strips TCP option 30 on the router: nft <c>reset tcp option mptcp</c> (kernel 5.17+, nft 1.0.1+), else iptables TCPOPTSTRIP.</summary>
    private string StripMptcpOption()
    {
        CommandResult nft = TryNft(RouterNamespace, """
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
            Exec(RouterNamespace, tool, "-t", "mangle", "-A", "FORWARD", "-p", "tcp", "-j", "TCPOPTSTRIP", "--strip-options", "30");
        }

        return IptablesStrip;
    }

    private void RouteAnycastTo(LabPop pop, bool replace)
    {
        string verb = replace ? "replace" : "add";
        Ip(RouterNamespace, "route", verb, Plan.Anycast4 + "/32", "via", pop.Address4);
        Ip(RouterNamespace, "-6", "route", verb, Plan.Anycast6 + "/128", "via", pop.Address6);
    }

    private void SaveState() => new LabState(Options, Active, StripMechanism).Save();

    private static void Veth(string ns, string name, string peerNs, string peerName)
    {
        Ip(ns, "link", "add", name, "type", "veth", "peer", "name", peerName, "netns", peerNs);
        Ip(ns, "link", "set", name, "up");
        Ip(peerNs, "link", "set", peerName, "up");
    }

    private static void Address(string ns, string dev, string cidr4, string cidr6)
    {
        Ip(ns, "addr", "add", cidr4, "dev", dev);
        Ip(ns, "addr", "add", cidr6, "dev", dev, "nodad");
    }

    private static void DefaultRoutes(string ns, string gateway4, string gateway6)
    {
        Ip(ns, "route", "add", "default", "via", LabAddressPlan.Host(gateway4));
        Ip(ns, "-6", "route", "add", "default", "via", LabAddressPlan.Host(gateway6));
    }

    private static void Ip(string ns, params string[] arguments) => CommandRunner.Run("ip", ["-n", ns, .. arguments]);

    private static void Sysctl(string ns, string key, string value) => Exec(ns, "sysctl", "-qw", $"{key}={value}");

    private static void Nft(string ns, string ruleset)
    {
        CommandResult result = TryNft(ns, ruleset);
        if (!result.Succeeded)
        {
            throw new InvalidOperationException($"nft in {ns} failed: {result.Output.Trim()}{Environment.NewLine}{ruleset}");
        }
    }

    private static CommandResult TryNft(string ns, string ruleset) =>
        CommandRunner.TryRun("ip", ["netns", "exec", ns, "nft", "-f", "-"], standardInput: ruleset + Environment.NewLine);

    private static void Section(StringBuilder text, string title, CommandResult result)
    {
        text.AppendLine($"-- {title}");
        string body = result.Output.TrimEnd();
        text.AppendLine(body.Length == 0 ? "   (none)" : string.Join(Environment.NewLine, body.Split('\n').Select(l => "   " + l)));
    }

    private static void KillProcessesIn(string ns)
    {
        CommandResult pids = CommandRunner.TryRun("ip", ["netns", "pids", ns]);
        if (!pids.Succeeded)
        {
            return;
        }

        foreach (string line in pids.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (int.TryParse(line, out int pid) && pid != Environment.ProcessId)
            {
                try
                {
                    using Process process = Process.GetProcessById(pid);
                    process.Kill(entireProcessTree: true);
                    process.WaitForExit(5_000);
                }
                catch (ArgumentException)
                {
                    // Already gone.
                }
                catch (InvalidOperationException)
                {
                    // Exited meanwhile.
                }
            }
        }
    }
}
