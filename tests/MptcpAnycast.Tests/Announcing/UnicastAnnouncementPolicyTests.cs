using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Kestrel.Announcing;

namespace MptcpAnycast.Tests.Announcing;

public sealed class UnicastAnnouncementPolicyTests
{
    private static readonly IPAddress Anycast4 = IPAddress.Parse("203.0.113.1");
    private static readonly IPAddress Anycast6 = IPAddress.Parse("2001:db8:a::1");

    private static UnicastAnnouncementPolicy Policy(params string[] unicast)
        => new([Anycast4, Anycast6], unicast.Select(u => IPEndPoint.Parse(u)));

    [Fact]
    public void Ipv4_connection_on_anycast_gets_the_ipv4_unicast_with_the_connection_port_and_id_1()
    {
        AnnouncementDecision d = Policy("192.0.2.10:0", "[2001:db8::10]:0").Decide(new IPEndPoint(Anycast4, 443), AddressFamily.InterNetwork);
        Assert.True(d.ShouldAnnounce);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("192.0.2.10"), 443), d.UnicastEndPoint);
        Assert.Equal(UnicastAnnouncementPolicy.IPv4AddressId, d.AddressId);
    }

    [Fact]
    public void A_configured_port_wins_over_the_connection_port()
    {
        AnnouncementDecision d = Policy("192.0.2.10:8443").Decide(new IPEndPoint(Anycast4, 443), AddressFamily.InterNetwork);
        Assert.Equal(8443, d.UnicastEndPoint!.Port);
    }

    [Fact]
    public void Ipv4_mapped_local_address_of_a_dual_mode_socket_counts_as_ipv4()
    {
        AnnouncementDecision d = Policy("192.0.2.10:0").Decide(new IPEndPoint(Anycast4.MapToIPv6(), 80), AddressFamily.InterNetworkV6);
        Assert.Equal(IPAddress.Parse("192.0.2.10"), d.UnicastEndPoint!.Address);
    }

    [Fact]
    public void Connection_on_another_local_address_gets_nothing()
    {
        AnnouncementDecision d = Policy("192.0.2.10:0").Decide(new IPEndPoint(IPAddress.Parse("192.0.2.10"), 80), AddressFamily.InterNetwork);
        Assert.False(d.ShouldAnnounce);
        Assert.Equal(NoAnnouncementReason.NotOnAnycastAddress, d.Reason);
        Assert.Contains("not one of the configured anycast", d.Describe());
    }

    [Fact]
    public void Ipv6_unicast_reaches_an_ipv4_connection_only_on_a_dual_stack_socket()
    {
        UnicastAnnouncementPolicy policy = Policy("[2001:db8::10]:0");
        AnnouncementDecision dual = policy.Decide(new IPEndPoint(Anycast4.MapToIPv6(), 80), AddressFamily.InterNetworkV6);
        AnnouncementDecision v4only = policy.Decide(new IPEndPoint(Anycast4, 80), AddressFamily.InterNetwork);

        Assert.Equal(IPAddress.Parse("2001:db8::10"), dual.UnicastEndPoint!.Address);
        Assert.Equal(UnicastAnnouncementPolicy.IPv6AddressId, dual.AddressId);
        Assert.False(v4only.ShouldAnnounce);
        Assert.Equal(NoAnnouncementReason.NoUnicastForFamily, v4only.Reason);
    }

    [Fact]
    public void Ipv6_connection_without_ipv6_unicast_gets_nothing()
    {
        AnnouncementDecision d = Policy("192.0.2.10:0").Decide(new IPEndPoint(Anycast6, 80), AddressFamily.InterNetworkV6);
        Assert.Equal(NoAnnouncementReason.NoUnicastForFamily, d.Reason);
    }

    [Fact]
    public void Without_anycast_addresses_every_connection_is_anycast()
    {
        var policy = new UnicastAnnouncementPolicy([], [IPEndPoint.Parse("192.0.2.10:0")]);
        Assert.True(policy.Decide(new IPEndPoint(IPAddress.Parse("198.51.100.1"), 80), AddressFamily.InterNetwork).ShouldAnnounce);
        // but never the connection's own local address
        Assert.False(policy.Decide(new IPEndPoint(IPAddress.Parse("192.0.2.10"), 80), AddressFamily.InterNetwork).ShouldAnnounce);
    }
}

public sealed class AnnouncementWireFormTests
{
    [Theory]
    [InlineData("192.0.2.10:0", 443, "192.0.2.10:443", "192.0.2.10:0")]
    [InlineData("192.0.2.10:443", 443, "192.0.2.10:443", "192.0.2.10:0")]
    [InlineData("192.0.2.10:8443", 443, "192.0.2.10:8443", "192.0.2.10:8443")]
    [InlineData("[2001:db8::10]:0", 443, "[2001:db8::10]:443", "[2001:db8::10]:0")]
    public void The_port_field_is_sent_only_when_it_differs_from_the_connection_port(string unicast, int port, string target, string wire)
    {
        var policy = new UnicastAnnouncementPolicy([], [IPEndPoint.Parse(unicast)]);
        IPAddress local = IPEndPoint.Parse(unicast).AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork
            ? IPAddress.Parse("203.0.113.1")
            : IPAddress.Parse("2001:db8:a::1");
        AnnouncementDecision d = policy.Decide(new IPEndPoint(local, port), local.AddressFamily);
        Assert.Equal(IPEndPoint.Parse(target), d.UnicastEndPoint);
        Assert.Equal(IPEndPoint.Parse(wire), d.WireEndPoint);
    }
}
