namespace MptcpAnycast.Lab;

/// <summary>Which unicast addresses the POPs have, for the subflow that outlives an anycast route change.</summary>
public enum LabUnicast
{
    /// <summary>Each POP has its own IPv4 and IPv6 unicast address: its router-facing link address.</summary>
    Own,

    /// <summary>
    /// No IPv4 unicast per POP: one shared IPv4 address on every POP's loopback and one TCP port per POP; the router
    /// forwards by destination port (firewall mark + policy routing) without rewriting the address. IPv6 unicast stays.
    /// </summary>
    SharedIpv4,

    /// <summary>No IPv4 unicast at all: only the POPs' IPv6 link addresses are announced.</summary>
    Ipv6Only,
}

/// <summary>How the client's MPTCP path manager treats an ADD_ADDR from the server.</summary>
public enum LabClientLimits
{
    /// <summary><c>ip mptcp limits set add_addr_accepted 1</c>: the client joins the announced address from its main address.</summary>
    AcceptAddAddr,

    /// <summary>Default limits plus a <c>subflow</c> endpoint on a second client address (the C-flag case of the kernel).</summary>
    SubflowEndpoint,

    /// <summary>Default limits, one address: the client ignores ADD_ADDR (except the C-flag case, which needs an endpoint).</summary>
    Defaults,
}

/// <summary>The POPs' <c>net.mptcp.path_manager</c>.</summary>
public enum LabPathManager
{
    /// <summary>
    /// <c>kernel</c>: the lab adds <c>signal</c> endpoints for each POP's unicast addresses, so the kernel announces them on
    /// every connection.
    /// </summary>
    Kernel,

    /// <summary><c>userspace</c>: nothing is announced unless an application (the MptcpAnycast transport) does it per connection.</summary>
    Userspace,
}

/// <summary>One POP of the lab.</summary>
public enum LabPopId
{
    /// <summary>POP A: the anycast route points here after <c>lab up</c>.</summary>
    A,

    /// <summary>POP B.</summary>
    B,

    /// <summary>POP C: only in a lab with three POPs (<see cref="LabOptions.Pops"/>).</summary>
    C,
}

/// <summary>
/// The addresses of the lab, documentation prefixes only. Link addresses are CIDR strings (<c>address/length</c>);
/// host addresses are plain. Each lab lives in its own namespaces, so two labs with the same plan do not clash; the
/// plan is still a record so a test can move it (for example to check that nothing depends on the defaults).
/// </summary>
public sealed record LabAddressPlan
{
    public static readonly LabAddressPlan Default = new();

    /// <summary>The anycast IPv4 address (/32 on each POP's loopback). Default 192.0.2.100.</summary>
    public string Anycast4 { get; init; } = "192.0.2.100";

    /// <summary>The anycast IPv6 address (/128 on each POP's loopback). Default 2001:db8:ac::1.</summary>
    public string Anycast6 { get; init; } = "2001:db8:ac::1";

    /// <summary>The shared IPv4 unicast of <see cref="LabUnicast.SharedIpv4"/> (/32 on each POP's loopback). Default 192.0.2.200.</summary>
    public string Shared4 { get; init; } = "192.0.2.200";

    /// <summary>The port that reaches POP A on <see cref="Shared4"/>. Default 8001.</summary>
    public int SharedPortA { get; init; } = 8001;

    /// <summary>The port that reaches POP B on <see cref="Shared4"/>. Default 8002.</summary>
    public int SharedPortB { get; init; } = 8002;

    /// <summary>The port that reaches POP C on <see cref="Shared4"/> (three POPs only). Default 8003.</summary>
    public int SharedPortC { get; init; } = 8003;

    public string RouterClient4 { get; init; } = "192.0.2.1/26";
    public string Client4 { get; init; } = "192.0.2.2/26";
    public string ClientSecond4 { get; init; } = "192.0.2.3/26";
    public string RouterClient6 { get; init; } = "2001:db8:c::1/64";
    public string Client6 { get; init; } = "2001:db8:c::2/64";
    public string ClientSecond6 { get; init; } = "2001:db8:c::3/64";

    public string RouterPopA4 { get; init; } = "198.51.100.1/24";
    public string PopA4 { get; init; } = "198.51.100.2/24";
    public string RouterPopA6 { get; init; } = "2001:db8:a::1/64";
    public string PopA6 { get; init; } = "2001:db8:a::2/64";

    public string RouterPopB4 { get; init; } = "203.0.113.1/24";
    public string PopB4 { get; init; } = "203.0.113.2/24";
    public string RouterPopB6 { get; init; } = "2001:db8:b::1/64";
    public string PopB6 { get; init; } = "2001:db8:b::2/64";

    // POP C (three POPs only). 198.51.100.0/24 and 203.0.113.0/24 are A's and B's links, so C's link is the one /26
    // of 192.0.2.0/24 that holds nothing else (.0/26 is the client's link, .100 and .200 sit in the two others).
    // 2001:db8:c::/64 is the client's link, so C's is 2001:db8:cc::/64.
    public string RouterPopC4 { get; init; } = "192.0.2.129/26";
    public string PopC4 { get; init; } = "192.0.2.130/26";
    public string RouterPopC6 { get; init; } = "2001:db8:cc::1/64";
    public string PopC6 { get; init; } = "2001:db8:cc::2/64";

    /// <summary>The host part of a CIDR string: <c>192.0.2.2/26</c> gives <c>192.0.2.2</c>.</summary>
    public static string Host(string cidr)
    {
        int slash = cidr.IndexOf('/');
        return slash < 0 ? cidr : cidr[..slash];
    }
}

/// <summary>Everything that shapes a lab. The defaults give the plain case: own unicast, kernel PM, client accepts ADD_ADDR.</summary>
public sealed record LabOptions
{
    /// <summary>Namespace names start with <c>PREFIX-</c>; the state file is <c>/run/mptcp-anycast/PREFIX.json</c>. Default <c>mpl</c> + pid.</summary>
    public string Prefix { get; init; } = DefaultPrefix();

    /// <summary>The fewest POPs a lab has: A and B.</summary>
    public const int MinPops = 2;

    /// <summary>The most POPs a lab has: A, B and C.</summary>
    public const int MaxPops = 3;

    /// <summary>How many POPs: <see cref="MinPops"/> (A and B) to <see cref="MaxPops"/> (A, B and C). Default 2.</summary>
    public int Pops { get; init; } = MinPops;

    /// <summary>The address plan. Default <see cref="LabAddressPlan.Default"/>.</summary>
    public LabAddressPlan Plan { get; init; } = LabAddressPlan.Default;

    /// <summary>The router masquerades the client towards the POPs (IPv4 and IPv6). Default off.</summary>
    public bool Nat { get; init; }

    /// <summary>The router drops TCP towards the POPs' unicast addresses (so joins cannot succeed). Default off.</summary>
    public bool Firewall { get; init; }

    /// <summary>The router removes the MPTCP TCP option (kind 30) from every TCP segment it forwards. Default off.</summary>
    public bool StripMptcp { get; init; }

    /// <summary>Which unicast addresses the POPs have. Default <see cref="LabUnicast.Own"/>.</summary>
    public LabUnicast Unicast { get; init; } = LabUnicast.Own;

    /// <summary>The client's path-manager limits. Default <see cref="LabClientLimits.AcceptAddAddr"/>.</summary>
    public LabClientLimits Client { get; init; } = LabClientLimits.AcceptAddAddr;

    /// <summary>The POPs' path manager. Default <see cref="LabPathManager.Kernel"/>.</summary>
    public LabPathManager PathManager { get; init; } = LabPathManager.Kernel;

    public static string DefaultPrefix() => $"mpl{Environment.ProcessId}";

    /// <summary>Checks the prefix: letters, digits and <c>_</c>, at most 24 characters (namespace names and file names).</summary>
    public static string? ValidatePrefix(string prefix) =>
        prefix.Length is 0 or > 24 || !prefix.All(c => char.IsAsciiLetterOrDigit(c) || c == '_')
            ? $"the lab prefix must be 1 to 24 letters, digits or '_' (got '{prefix}')"
            : null;

    /// <summary>Checks the POP count: <see cref="MinPops"/> to <see cref="MaxPops"/>.</summary>
    public static string? ValidatePops(int pops) =>
        pops is < MinPops or > MaxPops ? $"the lab has {MinPops} or {MaxPops} POPs (got {pops})" : null;

    /// <summary>
    /// A one-line summary: <c>unicast own, client accept-add-addr, pm kernel, nat</c>; <c>pops 3</c> after the path
    /// manager when there are three POPs (two, the default, is not mentioned).
    /// </summary>
    public override string ToString()
    {
        var parts = new List<string>
        {
            $"unicast {LabNames.Of(Unicast)}",
            $"client {LabNames.Of(Client)}",
            $"pm {LabNames.Of(PathManager)}",
        };
        if (Pops != MinPops)
        {
            parts.Add($"pops {Pops}");
        }

        if (Nat)
        {
            parts.Add("nat");
        }

        if (Firewall)
        {
            parts.Add("firewall");
        }

        if (StripMptcp)
        {
            parts.Add("strip-mptcp");
        }

        return string.Join(", ", parts);
    }
}

/// <summary>Command-line spellings of the lab's choices (<c>shared-ipv4</c>, <c>accept-add-addr</c>, ...).</summary>
public static class LabNames
{
    public static string Of<T>(T value) where T : struct, Enum
    {
        string name = value.ToString();
        var text = new System.Text.StringBuilder(name.Length + 4);
        for (int i = 0; i < name.Length; i++)
        {
            char c = name[i];
            if (char.IsUpper(c) && i > 0)
            {
                text.Append('-');
            }

            text.Append(char.ToLowerInvariant(c));
        }

        return text.ToString();
    }

    public static bool TryParse<T>(string text, out T value) where T : struct, Enum
    {
        foreach (T candidate in Enum.GetValues<T>())
        {
            if (string.Equals(Of(candidate), text, StringComparison.OrdinalIgnoreCase))
            {
                value = candidate;
                return true;
            }
        }

        value = default;
        return false;
    }

    public static string All<T>() where T : struct, Enum => string.Join("|", Enum.GetValues<T>().Select(v => Of(v)));
}
