using MptcpAnycast.Rescue;

namespace MptcpAnycast.Tests.Rescue;

public sealed class RescueSettingsTests
{
    private const string Key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes

    private static RescueOptions Valid() => new()
    {
        Name = "pop-a",
        Interface = "lo",
        AnycastAddresses = ["192.0.2.100", "2001:db8:ac::1"],
        UnicastIPv4 = "198.51.100.2",
        Peers = [new RescuePeerOptions { Name = "pop-b", UnicastIPv4 = "203.0.113.2", Key = Key }],
    };

    [Fact]
    public void Valid_options_give_settings_with_the_MSS_budget_from_the_MTU()
    {
        RescueSettings settings = RescueSettings.From(Valid());
        Assert.Equal("pop-a", settings.Name);
        Assert.Equal(2, settings.Anycast.Count);
        Assert.Equal(32, settings.Peers[0].Key.Length);
        int mtu = System.Net.NetworkInformation.NetworkInterface.GetAllNetworkInterfaces().Single(n => n.Name == "lo").GetIPProperties().GetIPv4Properties()!.Mtu;
        Assert.Equal(mtu - 60, settings.MssIPv4);
        Assert.Equal(mtu - 100, settings.MssIPv6);
    }

    public static TheoryData<string, Action<RescueOptions>, string> BadOptions => new()
    {
        { "no name", o => o.Name = null, "MptcpAnycast:Rescue:Name is empty" },
        { "no interface", o => o.Interface = " ", "MptcpAnycast:Rescue:Interface is empty" },
        { "unknown interface", o => o.Interface = "nosuch0", "MptcpAnycast:Rescue:Interface 'nosuch0': no such interface" },
        { "no anycast", o => o.AnycastAddresses = [], "MptcpAnycast:Rescue:AnycastAddresses is empty" },
        { "bad anycast", o => o.AnycastAddresses = ["192.0.2.300"], "MptcpAnycast:Rescue:AnycastAddresses:0 '192.0.2.300' is not an IP address" },
        { "prefix as anycast", o => o.AnycastAddresses = ["192.0.2.0/24"], "AnycastAddresses:0 '192.0.2.0/24' is not an IP address" },
        { "IPv6 as IPv4 unicast", o => o.UnicastIPv4 = "2001:db8::1", "MptcpAnycast:Rescue:UnicastIPv4 '2001:db8::1' is not an IPv4 address" },
        { "no unicast", o => o.UnicastIPv4 = null, "UnicastIPv4 and MptcpAnycast:Rescue:UnicastIPv6 are both empty" },
        { "peer without address", o => o.Peers[0].UnicastIPv4 = null, "MptcpAnycast:Rescue:Peers:0 ('pop-b') has neither UnicastIPv4 nor UnicastIPv6" },
        { "key not base64", o => o.Peers[0].Key = "not base64!", "MptcpAnycast:Rescue:Peers:0:Key is not base64" },
        { "short key", o => o.Peers[0].Key = "AAAA", "MptcpAnycast:Rescue:Peers:0:Key has 3 bytes; at least 16" },
        { "bad port", o => o.Port = 70000, "MptcpAnycast:Rescue:Port 70000 is not a UDP port" },
        { "zero timeout", o => o.LookupTimeout = TimeSpan.Zero, "MptcpAnycast:Rescue:LookupTimeout '00:00:00' must be between" },
        { "bad MSS", o => o.MssIPv4 = 100, "MptcpAnycast:Rescue:MssIPv4 100 must be between 536 and 65495" },
        {
            "too many anycast addresses", o => o.AnycastAddresses = [.. Enumerable.Range(0, 257).Select(i => $"2001:db8:ac::{i:x}")],
            "MptcpAnycast:Rescue:AnycastAddresses lists 257 addresses; the rescue program holds at most 256"
        },
        {
            "too many peer addresses",
            o => o.Peers = [.. Enumerable.Range(0, 129).Select(i => new RescuePeerOptions { Name = $"pop-{i}", UnicastIPv4 = $"203.0.113.{i}", UnicastIPv6 = $"2001:db8:b::{i:x}", Key = Key })],
            "MptcpAnycast:Rescue:Peers has 129 peers with 258 unicast addresses; the rescue program holds at most 256"
        },
    };

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void A_bad_setting_is_refused_with_its_name_and_value(string what, Action<RescueOptions> spoil, string expected)
    {
        RescueOptions options = Valid();
        spoil(options);
        RescueConfigurationException e = Assert.Throws<RescueConfigurationException>(() => RescueSettings.From(options));
        Assert.True(e.Message.Contains(expected, StringComparison.Ordinal), $"{what}: {e.Message}");
    }
}
