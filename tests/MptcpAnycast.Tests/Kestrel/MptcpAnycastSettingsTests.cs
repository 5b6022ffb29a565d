using System.Net;
using MptcpAnycast.Kestrel;
using MptcpAnycast.Kestrel.Hosting;

namespace MptcpAnycast.Tests.Kestrel;

public sealed class MptcpAnycastSettingsTests
{
    // The link-local addresses are the host's own, so that "no interface has it" is not what rejects them.
    private static readonly IPAddress[] Host =
    [
        IPAddress.Parse("192.0.2.10"), IPAddress.Parse("2001:db8::10"), IPAddress.Parse("203.0.113.1"), IPAddress.Loopback,
        IPAddress.Parse("fe80::10"), IPAddress.Parse("169.254.0.10"),
    ];

    private static MptcpAnycastSettings Validate(Action<MptcpAnycastOptions> configure)
    {
        var options = new MptcpAnycastOptions();
        configure(options);
        return MptcpAnycastSettings.Validate(options, Host);
    }

    [Theory]
    [InlineData("AnycastAddresses", "not-an-address")]
    [InlineData("AnycastAddresses", "10")]
    [InlineData("AnycastAddresses", "192.0.2")]
    [InlineData("AnycastAddresses", "192.0.2.300")]
    [InlineData("AnycastAddresses", "203.0.113.1:80")]
    [InlineData("AnycastAddresses", "[2001:db8::1]")]
    [InlineData("AnycastAddresses", "")]
    [InlineData("UnicastAddresses", "192.0.2.10:70000")]
    [InlineData("UnicastAddresses", "192.0.2.10:0")]
    [InlineData("UnicastAddresses", "192.0.2.10:-1")]
    [InlineData("UnicastAddresses", "[2001:db8::10]:99999")]
    [InlineData("UnicastAddresses", "2001:db8::10]:80")]
    [InlineData("UnicastAddresses", "[192.0.2.10]:80")]
    [InlineData("UnicastAddresses", "192.0.2.10:")]
    [InlineData("UnicastAddresses", "unicast.example")]
    [InlineData("UnicastAddresses", "192.0.2.99")] // not on this host
    [InlineData("UnicastAddresses", "203.0.113.1")] // equal to the anycast address
    public void Bad_address_settings_name_the_setting_and_the_value(string setting, string value)
    {
        var ex = Assert.Throws<MptcpAnycastConfigurationException>(() => Validate(o =>
        {
            o.AnycastAddresses.Add(setting == "AnycastAddresses" ? value : "203.0.113.1");
            if (setting == "UnicastAddresses")
            {
                o.UnicastAddresses.Add(value);
            }
        }));

        Assert.Equal(setting, ex.Setting);
        Assert.Equal(value, ex.Value);
        Assert.Contains($"MptcpAnycast:{setting} = '{value}'", ex.Message);
    }

    [Theory]
    [InlineData("AnycastAddresses", "0.0.0.0", "the unspecified address names no host")]
    [InlineData("AnycastAddresses", "::", "the unspecified address names no host")]
    [InlineData("AnycastAddresses", "::ffff:0.0.0.0", "the unspecified address names no host")]
    [InlineData("AnycastAddresses", "255.255.255.255", "the broadcast address names no host")]
    [InlineData("AnycastAddresses", "224.0.0.1", "a multicast address")]
    [InlineData("AnycastAddresses", "239.255.255.250", "a multicast address")]
    [InlineData("AnycastAddresses", "ff02::1", "a multicast address")]
    [InlineData("AnycastAddresses", "127.0.0.1", "a loopback address is reachable from this host only")]
    [InlineData("AnycastAddresses", "127.0.0.2", "a loopback address is reachable from this host only")]
    [InlineData("AnycastAddresses", "::1", "a loopback address is reachable from this host only")]
    [InlineData("AnycastAddresses", "::ffff:127.0.0.1", "a loopback address is reachable from this host only")]
    [InlineData("UnicastAddresses", "0.0.0.0", "the unspecified address names no host")]
    [InlineData("UnicastAddresses", "0.0.0.0:8443", "the unspecified address names no host")]
    [InlineData("UnicastAddresses", "::", "the unspecified address names no host")]
    [InlineData("UnicastAddresses", "[::]:8443", "the unspecified address names no host")]
    [InlineData("UnicastAddresses", "255.255.255.255", "the broadcast address names no host")]
    [InlineData("UnicastAddresses", "224.0.0.1", "a multicast address")]
    [InlineData("UnicastAddresses", "ff02::1", "a multicast address")]
    [InlineData("UnicastAddresses", "127.0.0.1", "a loopback address is reachable from this host only, not by a client of the anycast addresses")]
    [InlineData("UnicastAddresses", "[::1]:8443", "a loopback address is reachable from this host only")]
    [InlineData("AnycastAddresses", "169.254.0.10", "a link-local address (169.254.0.0/16 is valid on one link only)")]
    [InlineData("AnycastAddresses", "fe80::10", "a link-local address (valid on one link only")]
    [InlineData("UnicastAddresses", "169.254.0.10", "a link-local address (169.254.0.0/16 is valid on one link only); write this server's own routable unicast address, or auto")]
    [InlineData("UnicastAddresses", "[fe80::10]:8443", "a link-local address (valid on one link only")]
    [InlineData("UnicastAddresses", "::ffff:169.254.0.10", "a link-local address")]
    public void Addresses_no_client_of_the_anycast_addresses_can_connect_to_are_rejected_even_when_unassigned_ones_are_allowed(string setting, string value, string why)
    {
        var ex = Assert.Throws<MptcpAnycastConfigurationException>(() => Validate(o =>
        {
            o.AllowUnassignedUnicastAddresses = true; // so that "no interface has it" is not what rejects them
            o.AnycastAddresses.Add(setting == "AnycastAddresses" ? value : "203.0.113.1");
            if (setting == "UnicastAddresses")
            {
                o.UnicastAddresses.Add(value);
            }
        }));

        Assert.Equal(setting, ex.Setting);
        Assert.StartsWith($"MptcpAnycast:{setting} = '{value}': {why}", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("203.0.113.1", "203.0.113.1")]
    [InlineData("203.0.113.1", " ::ffff:203.0.113.1")]
    [InlineData("2001:db8::1", "2001:DB8:0::1")]
    public void An_anycast_address_listed_twice_is_rejected_with_both_spellings(string first, string second)
    {
        var ex = Assert.Throws<MptcpAnycastConfigurationException>(() => Validate(o =>
        {
            o.AnycastAddresses.Add(first);
            o.AnycastAddresses.Add("198.51.100.1");
            o.AnycastAddresses.Add(second);
        }));

        Assert.Equal("AnycastAddresses", ex.Setting);
        Assert.Equal(second, ex.Value);
        Assert.Equal($"MptcpAnycast:AnycastAddresses = '{second}': is already listed (as '{first}'); give each anycast address once", ex.Message);
    }

    [Fact]
    public void A_loopback_unicast_address_is_allowed_when_every_connection_counts_as_anycast()
    {
        // What single-host tests and benchmarks configure: loopback clients, which can reach the address.
        Assert.Equal(IPEndPoint.Parse("127.0.0.1:0"), Assert.Single(Validate(o => o.UnicastAddresses.Add("127.0.0.1")).Unicast));
        Assert.Equal(IPEndPoint.Parse("[::1]:8443"), Assert.Single(Validate(o =>
        {
            o.AllowUnassignedUnicastAddresses = true;
            o.UnicastAddresses.Add("[::1]:8443");
        }).Unicast));
    }

    [Fact]
    public void Two_unicast_addresses_of_one_family_are_rejected()
    {
        var ex = Assert.Throws<MptcpAnycastConfigurationException>(() => Validate(o =>
        {
            o.UnicastAddresses.Add("192.0.2.10");
            o.UnicastAddresses.Add("203.0.113.1");
        }));
        Assert.Contains("at most one", ex.Message);
        Assert.Equal("203.0.113.1", ex.Value);
    }

    [Theory]
    [InlineData("00:00:00")]
    [InlineData("-00:00:01")]
    [InlineData("02:00:00")]
    public void Join_timeout_out_of_range_is_rejected(string timeout)
    {
        var ex = Assert.Throws<MptcpAnycastConfigurationException>(() => Validate(o => o.JoinTimeout = TimeSpan.Parse(timeout)));
        Assert.Equal("JoinTimeout", ex.Setting);
    }

    [Theory]
    [InlineData("-00:00:00.001", "Userspace", "Accept", "from 0")]
    [InlineData("00:10:00.001", "Userspace", "Accept", "10 minutes")]
    [InlineData("00:00:00.200", "Kernel", "Accept", "needs Userspace mode")]
    [InlineData("00:00:00.200", "Userspace", "Demand", "AnnounceOn = Accept")]
    public void Announce_delay_out_of_range_or_without_a_use_is_rejected_with_the_value(string delay, string mode, string on, string why)
    {
        var ex = Assert.Throws<MptcpAnycastConfigurationException>(() => Validate(o =>
        {
            o.AnnounceDelay = TimeSpan.Parse(delay, System.Globalization.CultureInfo.InvariantCulture);
            o.Mode = Enum.Parse<AnnouncementMode>(mode);
            o.AnnounceOn = Enum.Parse<AnnounceOn>(on);
        }));
        Assert.Equal("AnnounceDelay", ex.Setting);
        Assert.Equal(TimeSpan.Parse(delay, System.Globalization.CultureInfo.InvariantCulture).ToString("c", System.Globalization.CultureInfo.InvariantCulture), ex.Value);
        Assert.Contains(why, ex.Message);
    }

    [Fact]
    public void Announce_delay_within_range_is_kept()
    {
        Assert.Equal(TimeSpan.FromMinutes(10), Validate(o => o.AnnounceDelay = TimeSpan.FromMinutes(10)).AnnounceDelay);
        Assert.Equal(TimeSpan.Zero, Validate(o => { }).AnnounceDelay);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(4095)]
    [InlineData(268_435_457)]
    [InlineData(int.MaxValue)]
    public void Event_socket_receive_buffer_out_of_range_is_rejected_with_the_value(int bytes)
    {
        var ex = Assert.Throws<MptcpAnycastConfigurationException>(() => Validate(o => o.EventSocketReceiveBufferSize = bytes));
        Assert.Equal("EventSocketReceiveBufferSize", ex.Setting);
        Assert.Equal(bytes.ToString(System.Globalization.CultureInfo.InvariantCulture), ex.Value);
        Assert.Contains("4096", ex.Message);
    }

    [Theory]
    [InlineData(4096)]
    [InlineData(1_048_576)]
    [InlineData(268_435_456)]
    public void Event_socket_receive_buffer_in_range_is_kept(int bytes)
    {
        Assert.Equal(bytes, Validate(o => o.EventSocketReceiveBufferSize = bytes).EventSocketReceiveBufferSize);
    }

    [Fact]
    public void Event_socket_receive_buffer_unset_is_4_MiB()
    {
        Assert.Equal(4 * 1024 * 1024, Validate(o => o.EventSocketReceiveBufferSize = null).EventSocketReceiveBufferSize);
    }

    [Theory]
    [InlineData(AnnouncementMode.Userspace)]
    [InlineData(AnnouncementMode.Kernel)]
    public void Userspace_or_kernel_mode_without_a_unicast_address_is_rejected_without_looking_at_the_host(AnnouncementMode mode)
    {
        var options = new MptcpAnycastOptions { Mode = mode };
        options.AnycastAddresses.Add("203.0.113.1");

        // No host addresses at all: the rule must not need them.
        var ex = Assert.Throws<MptcpAnycastConfigurationException>(() => MptcpAnycastSettings.Validate(options, []));

        Assert.Equal("UnicastAddresses", ex.Setting);
        Assert.Equal("", ex.Value);
        Assert.Equal($"MptcpAnycast:UnicastAddresses = '': Mode = {mode} needs at least one unicast address to announce (or 'auto')", ex.Message);
    }

    [Theory]
    [InlineData(AnnouncementMode.Auto)]
    [InlineData(AnnouncementMode.None)]
    public void Auto_or_none_mode_without_a_unicast_address_is_accepted(AnnouncementMode mode)
    {
        Assert.Empty(Validate(o => o.Mode = mode).Unicast);
    }

    [Theory]
    [InlineData(AnnouncementMode.Userspace)]
    [InlineData(AnnouncementMode.Kernel)]
    public void Userspace_or_kernel_mode_with_auto_is_left_to_the_host(AnnouncementMode mode)
    {
        var options = new MptcpAnycastOptions { Mode = mode };
        options.UnicastAddresses.Add("auto");

        // Whether auto finds an address depends on the host: decided when the transport starts.
        Assert.True(MptcpAnycastSettings.Validate(options, [IPAddress.Loopback]).UnicastFromAuto);
        Assert.Equal(2, MptcpAnycastSettings.Validate(options, Host).Unicast.Count);
    }

    [Fact]
    public void Kernel_mode_with_announce_on_demand_is_rejected_naming_both()
    {
        var ex = Assert.Throws<MptcpAnycastConfigurationException>(() => Validate(o =>
        {
            o.Mode = AnnouncementMode.Kernel;
            o.AnnounceOn = AnnounceOn.Demand;
            o.UnicastAddresses.Add("192.0.2.10");
        }));

        Assert.Equal("AnnounceOn", ex.Setting);
        Assert.Equal("Demand", ex.Value);
        Assert.StartsWith("MptcpAnycast:AnnounceOn = 'Demand': needs Mode = Userspace; with Mode = Kernel", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Kernel_mode_with_a_rate_limit_is_rejected_naming_both()
    {
        var ex = Assert.Throws<MptcpAnycastConfigurationException>(() => Validate(o =>
        {
            o.Mode = AnnouncementMode.Kernel;
            o.AnnouncementsPerClientPerMinute = 10;
            o.UnicastAddresses.Add("192.0.2.10");
        }));

        Assert.Equal("AnnouncementsPerClientPerMinute", ex.Setting);
        Assert.Equal("10", ex.Value);
        Assert.StartsWith("MptcpAnycast:AnnouncementsPerClientPerMinute = '10': needs Mode = Userspace; with Mode = Kernel", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(AnnouncementMode.Userspace)]
    [InlineData(AnnouncementMode.Auto)] // may resolve to Kernel; the transport warns then (events 26, 27)
    public void Demand_and_a_rate_limit_are_accepted_where_userspace_may_run(AnnouncementMode mode)
    {
        MptcpAnycastSettings settings = Validate(o =>
        {
            o.Mode = mode;
            o.AnnounceOn = AnnounceOn.Demand;
            o.AnnouncementsPerClientPerMinute = 10;
            o.UnicastAddresses.Add("192.0.2.10");
        });

        Assert.Equal(AnnounceOn.Demand, settings.AnnounceOn);
        Assert.Equal(10, settings.AnnouncementsPerClientPerMinute);
    }

    [Fact]
    public void Kernel_mode_with_accept_and_no_limit_is_accepted()
    {
        MptcpAnycastSettings settings = Validate(o =>
        {
            o.Mode = AnnouncementMode.Kernel;
            o.UnicastAddresses.Add("192.0.2.10");
        });

        Assert.Equal(AnnouncementMode.Kernel, settings.Mode);
    }

    [Fact]
    public void Undefined_enum_values_are_rejected_by_name()
    {
        var ex = Assert.Throws<MptcpAnycastConfigurationException>(() => Validate(o => o.Mode = (AnnouncementMode)42));
        Assert.Equal("Mode", ex.Setting);
        Assert.Contains("Userspace", ex.Message);
    }

    [Fact]
    public void Valid_forms_parse_with_and_without_ports()
    {
        MptcpAnycastSettings settings = Validate(o =>
        {
            o.AnycastAddresses.Add(" 203.0.113.1 ");
            o.AnycastAddresses.Add("2001:db8::1");
            o.UnicastAddresses.Add("192.0.2.10:8443");
            o.UnicastAddresses.Add("[2001:db8::10]:9443");
        });

        Assert.Equal([IPAddress.Parse("203.0.113.1"), IPAddress.Parse("2001:db8::1")], settings.Anycast);
        Assert.Equal([IPEndPoint.Parse("192.0.2.10:8443"), IPEndPoint.Parse("[2001:db8::10]:9443")], settings.Unicast);

        MptcpAnycastSettings bare = Validate(o => o.UnicastAddresses.Add("2001:db8::10"));
        Assert.Equal(0, Assert.Single(bare.Unicast).Port);
    }

    [Fact]
    public void Unassigned_unicast_is_accepted_when_explicitly_allowed()
    {
        MptcpAnycastSettings settings = Validate(o =>
        {
            o.AllowUnassignedUnicastAddresses = true;
            o.UnicastAddresses.Add("198.51.100.7:8081");
        });
        Assert.Equal(IPEndPoint.Parse("198.51.100.7:8081"), Assert.Single(settings.Unicast));
    }

    [Fact]
    public void Auto_picks_one_global_address_per_family_that_is_not_anycast()
    {
        MptcpAnycastSettings settings = Validate(o =>
        {
            o.AnycastAddresses.Add("203.0.113.1");
            o.UnicastAddresses.Add("auto");
        });

        Assert.Equal([new IPEndPoint(IPAddress.Parse("192.0.2.10"), 0), new IPEndPoint(IPAddress.Parse("2001:db8::10"), 0)], settings.Unicast);
    }

    [Fact]
    public void Defaults_are_what_the_docs_say()
    {
        var options = new MptcpAnycastOptions();
        Assert.Equal(AnnouncementMode.Auto, options.Mode);
        Assert.Equal(AnnounceOn.Accept, options.AnnounceOn);
        Assert.Equal(AfterJoinPolicy.PreferUnicast, options.AfterJoin);
        Assert.Equal(TimeSpan.FromSeconds(5), options.JoinTimeout);
        Assert.False(options.ConfigureHost);
        Assert.Empty(options.AnycastAddresses);
        Assert.Empty(options.UnicastAddresses);
        Assert.Null(options.EventSocketReceiveBufferSize);
    }
}
