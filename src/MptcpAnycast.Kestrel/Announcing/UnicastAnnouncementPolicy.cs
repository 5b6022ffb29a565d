using System.Net;
using System.Net.Sockets;

namespace MptcpAnycast.Kestrel.Announcing;

/// <summary>Why a connection gets no unicast announcement.</summary>
internal enum NoAnnouncementReason
{
    None = 0,
    NotMptcp,
    NotOnAnycastAddress,
    NoUnicastForFamily,
    Disabled,
}

/// <summary>What to announce on one connection: the unicast end point and the address id, or why nothing.</summary>
/// <param name="UnicastEndPoint">Where the client's subflow will arrive (address and the port it will use).</param>
/// <param name="AddressId">The address id in ADD_ADDR.</param>
/// <param name="Reason">Why nothing is announced, or None.</param>
/// <param name="WireEndPoint">What goes into ADD_ADDR: port 0 (no port field) when it is the connection's own port. An IPv6
/// ADD_ADDR with a port (30 bytes) does not fit beside TCP timestamps in the 40-byte option space; without it, it does.</param>
internal readonly record struct AnnouncementDecision(IPEndPoint? UnicastEndPoint, byte AddressId, NoAnnouncementReason Reason, IPEndPoint? WireEndPoint = null)
{
    public bool ShouldAnnounce => UnicastEndPoint is not null;

    public string Describe() => Reason switch
    {
        NoAnnouncementReason.None => "the unicast address is about to be announced",
        NoAnnouncementReason.NotMptcp => "the connection is not MPTCP",
        NoAnnouncementReason.NotOnAnycastAddress => "the connection's local address is not one of the configured anycast addresses",
        NoAnnouncementReason.NoUnicastForFamily => "no unicast address fits this connection (no IPv4 unicast for an IPv4 connection on an IPv4-only socket, or none at all)",
        NoAnnouncementReason.Disabled => "announcements are disabled (Mode = None)",
        _ => Reason.ToString(),
    };
}

/// <summary>
/// Decides, per connection, which unicast address the server announces. Pure and allocation-free per call.
/// </summary>
/// <remarks>
/// Rules: announce only on connections whose local address is one of the anycast addresses (all connections when
/// none is configured), never the connection's own local address; prefer a unicast address of the connection's own
/// family; an IPv4 connection on a dual-stack (IPv6) socket may get an IPv6 unicast address when no IPv4 one exists
/// (it reaches clients whose own socket is dual-stack, see docs); a unicast address without a port means "the
/// connection's own port".
/// </remarks>
internal sealed class UnicastAnnouncementPolicy
{
    /// <summary>Address ids used in the userspace path manager: 1 for IPv4, 2 for IPv6 (0 is the initial subflow).</summary>
    public const byte IPv4AddressId = 1;
    public const byte IPv6AddressId = 2;

    private readonly IPAddress[] _anycast;
    private readonly IPEndPoint? _unicastV4;
    private readonly IPEndPoint? _unicastV6;
    private readonly Dictionary<int, IPEndPoint> _v4ByPort = [];
    private readonly Dictionary<int, IPEndPoint> _v6ByPort = [];

    public UnicastAnnouncementPolicy(IEnumerable<IPAddress> anycast, IEnumerable<IPEndPoint> unicast)
    {
        _anycast = anycast.Select(static a => a.Unmapped()).Distinct().ToArray();
        foreach (IPEndPoint endPoint in unicast)
        {
            IPAddress address = endPoint.Address.Unmapped();
            if (address.AddressFamily == AddressFamily.InterNetwork)
            {
                _unicastV4 ??= new IPEndPoint(address, endPoint.Port);
            }
            else
            {
                _unicastV6 ??= new IPEndPoint(address, endPoint.Port);
            }
        }
    }

    public IPEndPoint? UnicastV4 => _unicastV4;

    public IPEndPoint? UnicastV6 => _unicastV6;

    /// <summary>Whether a connection whose server side is <paramref name="local"/> is on an anycast address.</summary>
    public bool IsAnycast(IPAddress local)
    {
        if (_anycast.Length == 0)
        {
            return true;
        }

        IPAddress normalized = local.Unmapped();
        foreach (IPAddress a in _anycast)
        {
            if (a.Equals(normalized))
            {
                return true;
            }
        }

        return false;
    }

    /// <param name="local">The server side of the initial subflow.</param>
    /// <param name="socketFamily">The accepted socket's family (an IPv4 client on a dual-mode listener gives InterNetworkV6).</param>
    public AnnouncementDecision Decide(IPEndPoint local, AddressFamily socketFamily)
    {
        if (!IsAnycast(local.Address))
        {
            return new(null, 0, NoAnnouncementReason.NotOnAnycastAddress);
        }

        IPAddress localAddress = local.Address.Unmapped();
        bool v4Connection = localAddress.AddressFamily == AddressFamily.InterNetwork;
        if (v4Connection)
        {
            if (_unicastV4 is not null && !_unicastV4.Address.Equals(localAddress))
            {
                return Announce(_unicastV4, local.Port, IPv4AddressId, _v4ByPort);
            }

            // An IPv6 address can only be used by an IPv4 connection on a dual-stack socket.
            if (_unicastV6 is not null && socketFamily == AddressFamily.InterNetworkV6)
            {
                return Announce(_unicastV6, local.Port, IPv6AddressId, _v6ByPort);
            }

            return new(null, 0, NoAnnouncementReason.NoUnicastForFamily);
        }

        if (_unicastV6 is not null && !_unicastV6.Address.Equals(localAddress))
        {
            return Announce(_unicastV6, local.Port, IPv6AddressId, _v6ByPort);
        }

        return new(null, 0, NoAnnouncementReason.NoUnicastForFamily);
    }

    private static AnnouncementDecision Announce(IPEndPoint unicast, int connectionPort, byte id, Dictionary<int, IPEndPoint> cache)
    {
        if (unicast.Port != 0 && unicast.Port != connectionPort)
        {
            return new(unicast, id, NoAnnouncementReason.None, unicast);
        }

        IPEndPoint wire = unicast.Port == 0 ? unicast : new IPEndPoint(unicast.Address, 0);
        IPEndPoint target;
        lock (cache)
        {
            if (!cache.TryGetValue(connectionPort, out target!))
            {
                target = new IPEndPoint(unicast.Address, connectionPort);
                if (cache.Count < 64)
                {
                    cache[connectionPort] = target;
                }
            }
        }

        return new(target, id, NoAnnouncementReason.None, wire);
    }
}
