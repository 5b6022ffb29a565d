namespace MptcpAnycast.Kestrel;

/// <summary>How the server's unicast address is announced to clients.</summary>
public enum AnnouncementMode
{
    /// <summary><see cref="Userspace"/> when the network namespace runs the userspace path manager, else <see cref="Kernel"/>.</summary>
    Auto = 0,

    /// <summary>Per connection, through the userspace path manager (<c>net.mptcp.path_manager = userspace</c>); needs <c>CAP_NET_ADMIN</c>.</summary>
    Userspace,

    /// <summary>Per namespace: the in-kernel path manager announces a <c>signal</c> endpoint on every MPTCP connection.</summary>
    Kernel,

    /// <summary>Serve MPTCP but announce nothing.</summary>
    None,
}

/// <summary>When a connection's unicast address is announced.</summary>
public enum AnnounceOn
{
    /// <summary>Right after accept: every MPTCP connection on an anycast address gets it.</summary>
    Accept = 0,

    /// <summary>
    /// Only when the application calls <see cref="IMptcpConnectionFeature.AnnounceAsync"/>. Shows the unicast address to
    /// fewer clients; clients with default limits accept only an ADD_ADDR that arrives right after the handshake,
    /// so fewer of them join. Userspace mode only: with <see cref="AnnouncementMode.Kernel"/> it is a start-up error, and
    /// when <see cref="AnnouncementMode.Auto"/> chooses Kernel mode the transport logs event 26 (the kernel announces on
    /// every connection).
    /// </summary>
    Demand,
}

/// <summary>What happens to the anycast subflow once the client's unicast subflow has joined.</summary>
public enum AfterJoinPolicy
{
    /// <summary>Leave both subflows as they are; the kernel's scheduler uses both.</summary>
    KeepBoth = 0,

    /// <summary>Mark the anycast subflow as backup (MP_PRIO), so both ends send on the unicast subflow.</summary>
    PreferUnicast,

    /// <summary>Close the anycast subflow; the connection carries on over the unicast subflow alone.</summary>
    MigrateToUnicast,
}

/// <summary>
/// Options of the MPTCP anycast transport. Bound from the configuration section <c>MptcpAnycast</c>
/// (<c>appsettings.json</c>, environment variables <c>MptcpAnycast__Mode</c>, command line <c>--MptcpAnycast:Mode</c>),
/// then from the callback given to <c>UseMptcpAnycast</c>. Validated once, when the host starts and before anything is
/// bound: a bad value ends start-up with an <c>OptionsValidationException</c> whose message names the setting, the
/// value and the expected form. Time spans are written <c>[d.]hh:mm:ss[.fffffff]</c> (<c>00:00:05</c> is 5 seconds; a
/// bare <c>5</c> is 5 days); lists by index (<c>--MptcpAnycast:UnicastAddresses:0=192.0.2.10</c>).
/// </summary>
public sealed class MptcpAnycastOptions
{
    /// <summary>The configuration section the options bind from: <c>MptcpAnycast</c>.</summary>
    public const string SectionName = "MptcpAnycast";

    /// <summary>
    /// How the unicast address is announced. Default <see cref="AnnouncementMode.Auto"/>. <see cref="AnnouncementMode.Userspace"/>
    /// and <see cref="AnnouncementMode.Kernel"/> need <see cref="UnicastAddresses"/> (an address or <c>auto</c>); without
    /// one they are a start-up error.
    /// </summary>
    public AnnouncementMode Mode { get; set; } = AnnouncementMode.Auto;

    /// <summary>
    /// The anycast addresses: announcements are made only on connections whose local address is one of these. Each
    /// once; not unspecified (<c>0.0.0.0</c>, <c>::</c>), broadcast, multicast or loopback.
    /// Default empty: every connection counts as anycast.
    /// </summary>
    public IList<string> AnycastAddresses { get; set; } = [];

    /// <summary>
    /// The unicast addresses to announce: <c>address</c>, <c>address:port</c> or <c>[v6address]:port</c>, at most one
    /// IPv4 and one IPv6; or <c>auto</c> for this host's global addresses other than the anycast ones. Without a port
    /// the connection's own port is used; with one, the transport also listens on that address and port (a shared
    /// public IPv4 address with a per-server port). Never unspecified, broadcast or multicast, and not loopback when
    /// <see cref="AnycastAddresses"/> is set: a client of those is on another host. Default empty: nothing is
    /// announced (an error with Mode = Userspace or Kernel).
    /// </summary>
    public IList<string> UnicastAddresses { get; set; } = [];

    /// <summary>When to announce. Default <see cref="AnnounceOn.Accept"/>.</summary>
    public AnnounceOn AnnounceOn { get; set; } = AnnounceOn.Accept;

    /// <summary>
    /// With <see cref="AnnounceOn.Accept"/> in Userspace mode: announce only once a connection has been open this long.
    /// Connections that end sooner are never announced, so they cost what plain MPTCP costs (announcing costs the
    /// kernel one more TCP segment each way per connection; benchmarks/README.md has what that does to short
    /// connections); a route change within the delay is not survived. The announcement is made
    /// within a quarter of the delay (at most 250 ms) after it is due. Default 0: right after accept. At most 10
    /// minutes (<c>00:10:00</c>; 200 ms is <c>00:00:00.200</c>). Not with Kernel mode (the kernel announces at once) or <see cref="AnnounceOn.Demand"/>.
    /// </summary>
    public TimeSpan AnnounceDelay { get; set; }

    /// <summary>What to do with the anycast subflow after the unicast subflow joins. Default <see cref="AfterJoinPolicy.PreferUnicast"/>.</summary>
    public AfterJoinPolicy AfterJoin { get; set; } = AfterJoinPolicy.PreferUnicast;

    /// <summary>How long to wait for the client's unicast subflow after announcing before the connection's state says
    /// "join timed out". The connection keeps working either way. Default 5 seconds (<c>00:00:05</c> in configuration). At most 1 hour.</summary>
    public TimeSpan JoinTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Whether the transport may change the host: set <c>net.mptcp.allow_join_initial_addr_port = 0</c> (the C flag)
    /// and create the kernel <c>signal</c> endpoints it needs (removed again at shutdown). Default false: the transport
    /// only reads, logs what is wrong, and fails start-up when Kernel mode lacks its endpoint.
    /// </summary>
    public bool ConfigureHost { get; set; }

    /// <summary>
    /// At most this many announcements per client and minute (clients counted per IPv4 address and per IPv6 /64);
    /// past it, a client's connections stay single-path with the reason in their state. Limits how fast a client can
    /// learn the POPs' unicast addresses, which bypass the anycast DDoS shield. Default 0: no limit. Userspace mode only:
    /// with <see cref="AnnouncementMode.Kernel"/> a limit is a start-up error (the kernel announces on every connection),
    /// and when <see cref="AnnouncementMode.Auto"/> chooses Kernel mode the transport logs event 27.
    /// </summary>
    public int AnnouncementsPerClientPerMinute { get; set; }

    /// <summary>
    /// Allow unicast addresses that no interface of this host holds. Needed for a shared public IPv4 address that a
    /// load balancer forwards by port without rewriting it. Default false: such an address is a start-up error.
    /// </summary>
    public bool AllowUnassignedUnicastAddresses { get; set; }

    /// <summary>
    /// The receive buffer (<c>SO_RCVBUF</c>, in bytes; the kernel doubles it) of the socket on which the transport
    /// hears the kernel's path-manager events, from 4096 (4 KiB) to 268435456 (256 MiB). When the kernel produces events
    /// faster than the transport reads them (a burst of thousands of connections), what does not fit is dropped; the
    /// transport then reads every tracked connection's state from its socket, logs event id 11 and counts
    /// <c>mptcp_anycast.path_manager.events_lost</c>. A larger buffer makes that rarer. Above
    /// <c>net.core.rmem_max</c> the transport uses <c>SO_RCVBUFFORCE</c> (it has <c>CAP_NET_ADMIN</c> to follow
    /// events). Default null: 4 MiB (4194304), well above the system default (<c>net.core.rmem_default</c>), which
    /// bursts of thousands of new connections per second overflow (benchmarks/README.md, event lag).
    /// </summary>
    public int? EventSocketReceiveBufferSize { get; set; }

    /// <summary>Why the configuration's text could not be bound (the validator reports it), or null.</summary>
    internal string? BindingProblem { get; set; }
}
