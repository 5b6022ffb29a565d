using System.Net;
using System.Net.Sockets;

namespace MptcpAnycast;

/// <summary>
/// A dual-mode (IPv6) socket reports IPv4 peers as IPv4-mapped IPv6 addresses (<c>::ffff:192.0.2.1</c>); the kernel,
/// the path manager and people speak of them as IPv4. Compiled into each assembly that compares or prints addresses.
/// </summary>
internal static class IPAddressExtensions
{
    /// <summary>The IPv4 address for an IPv4-mapped one; any other address as it is.</summary>
    public static IPAddress Unmapped(this IPAddress address) => address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;

    /// <summary>The end point with its address <see cref="Unmapped(IPAddress)"/>; the same instance when nothing changes.</summary>
    public static IPEndPoint Unmapped(this IPEndPoint endPoint) =>
        endPoint.Address.IsIPv4MappedToIPv6 ? new IPEndPoint(endPoint.Address.MapToIPv4(), endPoint.Port) : endPoint;

    /// <summary>Whether two addresses are the same once unmapped.</summary>
    public static bool SameAddressAs(this IPAddress address, IPAddress other) => address.Unmapped().Equals(other.Unmapped());

    /// <summary>Why <paramref name="address"/> is no host's address (unspecified, broadcast, multicast), or null.</summary>
    public static string? NotAHost(this IPAddress address)
    {
        if (address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any))
        {
            return "the unspecified address names no host";
        }

        if (address.Equals(IPAddress.Broadcast))
        {
            return "the broadcast address names no host";
        }

        bool multicast = address.AddressFamily == AddressFamily.InterNetworkV6
            ? address.IsIPv6Multicast
            : address.GetAddressBytes()[0] is >= 224 and <= 239;
        return multicast ? "a multicast address names a group, not a host" : null;
    }

    /// <summary>Why <paramref name="address"/> is valid on one link only (IPv4 169.254.0.0/16, IPv6 fe80::/10), or null.</summary>
    public static string? OnOneLinkOnly(this IPAddress address)
    {
        if (address.AddressFamily == AddressFamily.InterNetworkV6)
        {
            return address.IsIPv6LinkLocal ? "a link-local address (valid on one link only, and unusable without a scope)" : null;
        }

        byte[] b = address.GetAddressBytes();
        return b[0] == 169 && b[1] == 254 ? "a link-local address (169.254.0.0/16 is valid on one link only)" : null;
    }
}
