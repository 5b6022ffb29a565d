namespace MptcpAnycast.Rescue;

/// <summary>
/// The rescue agent's configuration: this POP's uplink, anycast and unicast addresses, and its peers. Bound from
/// configuration (section <see cref="SectionName"/>) or a JSON file for <c>mptcp-anycast rescue run</c>; addresses are
/// strings so that a bad one is reported with its setting name.
/// </summary>
public sealed class RescueOptions
{
    /// <summary>The configuration section the ASP.NET Core host binds: <c>MptcpAnycast:Rescue</c>.</summary>
    public const string SectionName = "MptcpAnycast:Rescue";

    /// <summary>This POP's name in the lookup protocol (letters, digits, '-', '_', '.'; at most 32 bytes). Required.</summary>
    public string? Name { get; set; }

    /// <summary>The interface the anycast traffic arrives on (and tunnelled packets leave by). Required.</summary>
    public string? Interface { get; set; }

    /// <summary>
    /// The anycast addresses (IPv4 and/or IPv6) whose TCP segments are steered. At least one; null counts as empty.
    /// None may be unspecified, loopback, multicast, broadcast or link-local, or one of the unicast addresses.
    /// </summary>
    public IList<string> AnycastAddresses { get; set; } = [];

    /// <summary>
    /// This POP's own unicast IPv4 address: where peers tunnel to and ask, assigned to an interface of this host. At
    /// least one of the two.
    /// </summary>
    public string? UnicastIPv4 { get; set; }

    /// <summary>This POP's own unicast IPv6 address.</summary>
    public string? UnicastIPv6 { get; set; }

    /// <summary>
    /// The other POPs that serve the same anycast addresses; null counts as empty. Each has a name and addresses of its
    /// own (not this POP's, not an anycast one) and shares an address family with this POP. Empty is accepted with a
    /// warning: no connection can be rescued, and each one this POP does not own is reset.
    /// </summary>
    public IList<RescuePeerOptions> Peers { get; set; } = [];

    /// <summary>The UDP port of the lookup protocol, the same on every POP. Default 62201.</summary>
    public int Port { get; set; } = 62201;

    /// <summary>
    /// How long finding a flow's owner may take before the flow is reset (a stall is worse than a reset). Default 250 ms:
    /// within a client's first retransmission timeout.
    /// </summary>
    public TimeSpan LookupTimeout { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>Owner lookups started per second at most. Default 2,000.</summary>
    public int LookupsPerSecond { get; set; } = 2000;

    /// <summary>
    /// How long a rescued flow's owner is kept after the last segment tunnelled to it. Default 10 minutes. A segment
    /// after that is a miss again: held while the owner is looked up anew (a round trip to the peers), then sent on.
    /// Once no owner is left, local segments no longer read the owner hint. Between 1 second and 1 day.
    /// </summary>
    public TimeSpan OwnerIdleTimeout { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// The MSS that SYN-ACKs from an anycast address carry at most, so that a client's full-size segment still fits the
    /// tunnel. Default (0): the interface's MTU minus 60 (IPv4 in IPv4) and minus 100 (IPv6 in IPv6).
    /// </summary>
    public int MssIPv4 { get; set; }

    /// <inheritdoc cref="MssIPv4"/>
    public int MssIPv6 { get; set; }

    /// <summary>
    /// A directory on a bpffs mount where the owner map (<c>rescue_owners_NAME</c>) and the attached tcx programs
    /// (<c>rescue_ingress_NAME</c>, <c>rescue_egress_NAME</c>) are pinned, so that an agent that restarts after a crash
    /// keeps the flows it was rescuing and, even without CAP_SYS_ADMIN, replaces its predecessor's programs in place.
    /// The name may not then hold a '.'. Default none: the map goes with the agent.
    /// </summary>
    public string? PinDirectory { get; set; }

    /// <summary>
    /// Where the agent writes its status every second (<c>NAME.json</c>), for <c>mptcp-anycast rescue status</c>.
    /// Default <c>/run/mptcp-anycast/rescue</c>; empty: no status file.
    /// </summary>
    public string? StatusDirectory { get; set; } = DefaultStatusDirectory;

    /// <summary>The default <see cref="StatusDirectory"/>.</summary>
    public const string DefaultStatusDirectory = "/run/mptcp-anycast/rescue";

    /// <summary>
    /// Checks every setting as <see cref="RescueAgent.Start"/> does, starting nothing: a host calls it before it starts
    /// anything else. What only binding can find (the lookup port in use, a unicast address this host lacks) is left to
    /// <see cref="RescueAgent.Start"/>.
    /// </summary>
    /// <param name="settingsPrefix">The configuration path that error messages name the settings by.</param>
    /// <exception cref="RescueConfigurationException">A setting is missing or bad; the message names it and its value.</exception>
    public void Validate(string settingsPrefix = SectionName) => RescueSettings.From(this, settingsPrefix);
}

/// <summary>One other POP: its name, unicast addresses and the key shared with it.</summary>
public sealed class RescuePeerOptions
{
    /// <summary>The peer's name, as it configures its own <see cref="RescueOptions.Name"/>.</summary>
    public string? Name { get; set; }

    /// <summary>The peer's unicast IPv4 address (tunnel end and lookup address for IPv4 flows).</summary>
    public string? UnicastIPv4 { get; set; }

    /// <summary>The peer's unicast IPv6 address.</summary>
    public string? UnicastIPv6 { get; set; }

    /// <summary>The key shared with this peer, base64 (at least 16 bytes; 32 recommended: <c>openssl rand -base64 32</c>).</summary>
    public string? Key { get; set; }
}
