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
        { "all-zero key", o => o.Peers[0].Key = Convert.ToBase64String(new byte[32]), "MptcpAnycast:Rescue:Peers:0:Key is 32 bytes of 0x00 only, which is no secret" },
        { "one repeated byte", o => o.Peers[0].Key = Convert.ToBase64String(Enumerable.Repeat((byte)0xff, 16).ToArray()), "Peers:0:Key is 16 bytes of 0xff only" },
        { "bad port", o => o.Port = 70000, "MptcpAnycast:Rescue:Port 70000 is not a UDP port" },
        { "zero timeout", o => o.LookupTimeout = TimeSpan.Zero, "MptcpAnycast:Rescue:LookupTimeout '00:00:00' must be between" },
        { "sub-second idle timeout", o => o.OwnerIdleTimeout = TimeSpan.FromMilliseconds(500), "MptcpAnycast:Rescue:OwnerIdleTimeout '00:00:00.5000000' must be between 00:00:01 and 1.00:00:00" },
        { "idle timeout over a day", o => o.OwnerIdleTimeout = TimeSpan.FromDays(2), "MptcpAnycast:Rescue:OwnerIdleTimeout '2.00:00:00' must be between" },
        { "bad MSS", o => o.MssIPv4 = 100, "MptcpAnycast:Rescue:MssIPv4 100 must be between 536 and 65495" },
        { "relative pin directory", o => o.PinDirectory = "bpf", "MptcpAnycast:Rescue:PinDirectory 'bpf' is not an absolute path" },
        { "missing pin directory", o => o.PinDirectory = "/nonexistent/bpf", "MptcpAnycast:Rescue:PinDirectory '/nonexistent/bpf' does not exist; mount a bpffs there" },
        { "pin directory not on bpffs", o => o.PinDirectory = "/proc", "MptcpAnycast:Rescue:PinDirectory '/proc' is on a proc file system, not bpffs" },
        { "pin directory a file", o => o.PinDirectory = "/etc/hostname", "MptcpAnycast:Rescue:PinDirectory '/etc/hostname' is a file, not a directory" },
        { "relative status directory", o => o.StatusDirectory = "run/rescue", "MptcpAnycast:Rescue:StatusDirectory 'run/rescue' is not an absolute path" },
        { "status directory a file", o => o.StatusDirectory = "/etc/hostname", "MptcpAnycast:Rescue:StatusDirectory '/etc/hostname' is a file, not a directory" },
        { "status directory with a NUL", o => o.StatusDirectory = "/run/a\0b", "MptcpAnycast:Rescue:StatusDirectory holds a NUL character" },
        { "status directory in /proc", o => o.StatusDirectory = "/proc/rescue", "MptcpAnycast:Rescue:StatusDirectory '/proc/rescue' is on a proc file system" },
        { "status directory in /sys", o => o.StatusDirectory = "/sys/kernel/rescue", "MptcpAnycast:Rescue:StatusDirectory '/sys/kernel/rescue' is on a sysfs file system" },
        {
            "a '.' in the name of an agent that pins", o => { o.Name = "pop.a"; o.PinDirectory = "/proc"; },
            "MptcpAnycast:Rescue:Name 'pop.a' has a '.', which bpffs refuses in the names of pins"
        },
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

    public static TheoryData<string, Action<RescueOptions>, string> BadNamesAndPeers => new()
    {
        { "space in the name", o => o.Name = "pop a", "MptcpAnycast:Rescue:Name 'pop a' is not a POP name: 1 to 32 ASCII letters" },
        { "name of 40", o => o.Name = new string('p', 40), $"MptcpAnycast:Rescue:Name '{new string('p', 40)}' is not a POP name" },
        { "path in the name", o => o.Name = "x/../y", "MptcpAnycast:Rescue:Name 'x/../y' is not a POP name" },
        { "non-ASCII name", o => o.Name = "pöp-a", "MptcpAnycast:Rescue:Name 'pöp-a' is not a POP name" },
        { "bad peer name", o => o.Peers[0].Name = "pop/b", "MptcpAnycast:Rescue:Peers:0:Name 'pop/b' is not a POP name" },
        { "peer of 33", o => o.Peers[0].Name = new string('b', 33), $"MptcpAnycast:Rescue:Peers:0:Name '{new string('b', 33)}' is not a POP name" },
        { "peer named as this POP", o => o.Peers[0].Name = "pop-a", "MptcpAnycast:Rescue:Peers:0:Name 'pop-a' is this POP's own name (MptcpAnycast:Rescue:Name)" },
        {
            "peer named as this POP but for case", o => o.Peers[0].Name = "POP-A",
            "MptcpAnycast:Rescue:Peers:0:Name 'POP-A' is this POP's own name (MptcpAnycast:Rescue:Name 'pop-a': names that differ only in case are one name)"
        },
        {
            "the same peer twice but for case", o => o.Peers.Add(new RescuePeerOptions { Name = "Pop-B", UnicastIPv4 = "203.0.113.3", Key = Key }),
            "MptcpAnycast:Rescue:Peers:1:Name 'Pop-B' is also MptcpAnycast:Rescue:Peers:0:Name ('pop-b': names that differ only in case are one name); list each peer once"
        },
        {
            "the same peer twice", o => o.Peers.Add(new RescuePeerOptions { Name = "pop-b", UnicastIPv4 = "203.0.113.3", Key = Key }),
            "MptcpAnycast:Rescue:Peers:1:Name 'pop-b' is also MptcpAnycast:Rescue:Peers:0:Name"
        },
        {
            "no family in common", o => o.Peers[0] = new RescuePeerOptions { Name = "pop-b", UnicastIPv6 = "2001:db8:b::2", Key = Key },
            "MptcpAnycast:Rescue:Peers:0 ('pop-b') has only MptcpAnycast:Rescue:Peers:0:UnicastIPv6 and this POP has no MptcpAnycast:Rescue:UnicastIPv6"
        },
        {
            "no family in common, the other way", o => { o.UnicastIPv4 = null; o.UnicastIPv6 = "2001:db8:a::2"; },
            "MptcpAnycast:Rescue:Peers:0 ('pop-b') has only MptcpAnycast:Rescue:Peers:0:UnicastIPv4 and this POP has no MptcpAnycast:Rescue:UnicastIPv4"
        },
        { "a null peer", o => o.Peers.Add(null!), "MptcpAnycast:Rescue:Peers:1 is empty (null)" },
        { "a null anycast address", o => o.AnycastAddresses.Add(null!), "MptcpAnycast:Rescue:AnycastAddresses:2 is empty" },
        { "null anycast list", o => o.AnycastAddresses = null!, "MptcpAnycast:Rescue:AnycastAddresses is empty" },
    };

    public static TheoryData<string, Action<RescueOptions>, string> Clashes => new()
    {
        { "unicast is anycast", o => o.UnicastIPv4 = "192.0.2.100", "MptcpAnycast:Rescue:UnicastIPv4 '192.0.2.100' is also MptcpAnycast:Rescue:AnycastAddresses:0" },
        { "unicast6 is anycast", o => o.UnicastIPv6 = "2001:DB8:AC::1", "MptcpAnycast:Rescue:UnicastIPv6 '2001:DB8:AC::1' is also MptcpAnycast:Rescue:AnycastAddresses:1" },
        { "peer is this POP", o => o.Peers[0].UnicastIPv4 = "198.51.100.2", "MptcpAnycast:Rescue:Peers:0:UnicastIPv4 '198.51.100.2' is also MptcpAnycast:Rescue:UnicastIPv4" },
        { "peer is anycast", o => o.Peers[0].UnicastIPv4 = "192.0.2.100", "MptcpAnycast:Rescue:Peers:0:UnicastIPv4 '192.0.2.100' is also MptcpAnycast:Rescue:AnycastAddresses:0" },
        {
            "peer6 is anycast", o => { o.UnicastIPv6 = "2001:db8:a::2"; o.Peers[0].UnicastIPv6 = "2001:db8:ac::1"; },
            "MptcpAnycast:Rescue:Peers:0:UnicastIPv6 '2001:db8:ac::1' is also MptcpAnycast:Rescue:AnycastAddresses:1"
        },
        {
            "two peers, one address", o => o.Peers.Add(new RescuePeerOptions { Name = "pop-c", UnicastIPv4 = "203.0.113.2", Key = Key }),
            "MptcpAnycast:Rescue:Peers:1:UnicastIPv4 '203.0.113.2' is also MptcpAnycast:Rescue:Peers:0:UnicastIPv4"
        },
    };

    [Theory]
    [MemberData(nameof(BadNamesAndPeers))]
    [MemberData(nameof(Clashes))]
    public void Names_peers_and_addresses_that_cannot_work_together_are_refused_naming_both_settings(string what, Action<RescueOptions> spoil, string expected) =>
        A_bad_setting_is_refused_with_its_name_and_value(what, spoil, expected);

    [Theory]
    [InlineData("0.0.0.0", "unspecified")]
    [InlineData("0.1.2.3", "unspecified")]
    [InlineData("127.0.0.1", "a loopback address")]
    [InlineData("127.8.9.10", "a loopback address")]
    [InlineData("255.255.255.255", "the broadcast address")]
    [InlineData("224.0.0.1", "a multicast address")]
    [InlineData("169.254.7.7", "a link-local address (169.254.0.0/16 is valid on one link only)")]
    [InlineData("240.0.0.1", "a reserved address (240.0.0.0/4 is routed nowhere)")]
    [InlineData("255.255.255.254", "a reserved address")]
    [InlineData("::", "unspecified")]
    [InlineData("::1", "a loopback address")]
    [InlineData("ff02::1", "a multicast address")]
    [InlineData("fe80::1", "a link-local address")]
    public void Addresses_that_are_not_some_host_s_unicast_are_refused_wherever_they_are_set(string address, string what)
    {
        bool ipv6 = address.Contains(':', StringComparison.Ordinal);
        string family = ipv6 ? "UnicastIPv6" : "UnicastIPv4";
        var placements = new (string Setting, Action<RescueOptions> Put)[]
        {
            ("MptcpAnycast:Rescue:AnycastAddresses:0", o => o.AnycastAddresses[0] = address),
            ($"MptcpAnycast:Rescue:{family}", o => { if (ipv6) { o.UnicastIPv6 = address; } else { o.UnicastIPv4 = address; } }),
            ($"MptcpAnycast:Rescue:Peers:0:{family}", o => { if (ipv6) { o.Peers[0].UnicastIPv6 = address; } else { o.Peers[0].UnicastIPv4 = address; } }),
        };
        foreach ((string setting, Action<RescueOptions> put) in placements)
        {
            A_bad_setting_is_refused_with_its_name_and_value(setting, put, $"{setting} '{address}' is {what}");
        }
    }

    [Theory]
    [InlineData("10")] // 0.0.0.10 to IPAddress.TryParse
    [InlineData("1.2.3")] // 1.2.0.3
    [InlineData("0x7f.1")] // 127.0.0.1
    [InlineData("192.0.2.010")] // octal to some parsers
    [InlineData("fe80::1%lo")] // a scope
    [InlineData("[2001:db8::1]:80")] // a port, dropped
    [InlineData("[2001:db8::1]")]
    [InlineData("192.0.2.1:80")]
    [InlineData("2001:db8::/64")]
    public void Addresses_are_read_strictly(string text)
    {
        bool ipv6 = text.Contains(':', StringComparison.Ordinal) && !text.StartsWith("192.", StringComparison.Ordinal);
        A_bad_setting_is_refused_with_its_name_and_value("anycast", o => o.AnycastAddresses[0] = text,
            $"MptcpAnycast:Rescue:AnycastAddresses:0 '{text}' is not an IP address");
        A_bad_setting_is_refused_with_its_name_and_value("unicast", o => { if (ipv6) { o.UnicastIPv6 = text; } else { o.UnicastIPv4 = text; } },
            $"MptcpAnycast:Rescue:UnicastIPv{(ipv6 ? 6 : 4)} '{text}' is not an IP address");
        A_bad_setting_is_refused_with_its_name_and_value("peer", o => { if (ipv6) { o.Peers[0].UnicastIPv6 = text; } else { o.Peers[0].UnicastIPv4 = text; } },
            $"MptcpAnycast:Rescue:Peers:0:UnicastIPv{(ipv6 ? 6 : 4)} '{text}' is not an IP address");
    }

    [Fact]
    public void Names_at_the_limits_and_an_IPv4_mapped_unicast_are_accepted()
    {
        RescueOptions options = Valid();
        options.Name = new string('a', 32);
        options.Peers[0].Name = "Pop_B.2-x";
        options.UnicastIPv4 = "::ffff:198.51.100.2";
        RescueSettings settings = RescueSettings.From(options);
        Assert.Equal(new string('a', 32), settings.Name);
        Assert.Equal(System.Net.IPAddress.Parse("198.51.100.2"), settings.UnicastIPv4);
    }

    [Fact]
    public void No_peers_is_accepted_whether_the_list_is_empty_or_null()
    {
        RescueOptions options = Valid();
        options.Peers = [];
        Assert.Empty(RescueSettings.From(options).Peers);
        options.Peers = null!;
        Assert.Empty(RescueSettings.From(options).Peers);
    }

    [Fact]
    public void A_duplicate_anycast_address_is_kept_once()
    {
        RescueOptions options = Valid();
        options.AnycastAddresses.Add("192.0.2.100");
        Assert.Equal(2, RescueSettings.From(options).Anycast.Count);
    }

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void A_bad_setting_is_refused_with_its_name_and_value(string what, Action<RescueOptions> spoil, string expected)
    {
        RescueOptions options = Valid();
        spoil(options);
        RescueConfigurationException e = Assert.Throws<RescueConfigurationException>(() => RescueSettings.From(options));
        Assert.True(e.Message.Contains(expected, StringComparison.Ordinal), $"{what}: {e.Message}");
    }

    [Fact]
    public void A_status_directory_is_judged_by_what_its_path_holds_and_where_its_links_lead()
    {
        string root = Directory.CreateTempSubdirectory("mpa-status-").FullName;
        try
        {
            string file = Path.Combine(root, "afile");
            File.WriteAllText(file, "");
            File.CreateSymbolicLink(Path.Combine(root, "proc"), "/proc");
            Directory.CreateSymbolicLink(Path.Combine(root, "dir"), root);

            Assert.Contains($"StatusDirectory '{file}/sub' lies under '{file}', which is a file, not a directory", Refused(file + "/sub"));
            Assert.Contains($"StatusDirectory '{file}/a/b' lies under '{file}', which is a file, not a directory", Refused(file + "/a/b"));
            Assert.Contains($"StatusDirectory '{root}/proc/rescue' (its links lead to '/proc/rescue') is on a proc file system", Refused(root + "/proc/rescue"));
            Assert.Contains($"StatusDirectory '{root}/dir/proc/' (its links lead to '/proc') is on a proc file system", Refused(root + "/dir/proc/"));
            File.CreateSymbolicLink(Path.Combine(root, "gone"), root + "/nowhere");
            Assert.Contains($"StatusDirectory '{root}/gone' is a symbolic link to '{root}/nowhere' that leads nowhere", Refused(root + "/gone"));
            Assert.Contains($"StatusDirectory '{root}/gone/sub' lies under '{root}/gone', a symbolic link to '{root}/nowhere' that leads nowhere", Refused(root + "/gone/sub"));

            // Not there yet, under a directory (through a link, too): the agent creates it.
            foreach (string fine in new[] { root + "/new/status", root + "/dir/new", root })
            {
                RescueOptions options = Valid();
                options.StatusDirectory = fine;
                Assert.Equal(fine, RescueSettings.From(options).StatusDirectory);
            }
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }

        static string Refused(string directory)
        {
            RescueOptions options = Valid();
            options.StatusDirectory = directory;
            return Assert.Throws<RescueConfigurationException>(() => RescueSettings.From(options)).Message;
        }
    }

    [Fact]
    public void A_pin_directory_reached_through_a_link_is_judged_by_the_mount_it_leads_to()
    {
        string root = Directory.CreateTempSubdirectory("mpa-pins-").FullName;
        string bpffs = Path.Combine(root, "bpffs");
        Directory.CreateDirectory(bpffs);
        MptcpAnycast.Lab.CommandRunner.Run("mount", ["-t", "bpf", "bpf", bpffs]);
        try
        {
            string link = Path.Combine(root, "pins");
            Directory.CreateSymbolicLink(link, bpffs);
            Directory.CreateSymbolicLink(Path.Combine(root, "tmp"), root);
            RescueOptions options = Valid();
            options.PinDirectory = link;
            Assert.Equal(link, RescueSettings.From(options).PinDirectory);

            options.PinDirectory = Path.Combine(root, "tmp");
            string refused = Assert.Throws<RescueConfigurationException>(() => RescueSettings.From(options)).Message;
            Assert.Contains($"PinDirectory '{root}/tmp' (its links lead to '{root}') is on a", refused);
            Assert.Contains("file system, not bpffs", refused);
        }
        finally
        {
            MptcpAnycast.Lab.CommandRunner.Run("umount", ["-l", bpffs]);
            Directory.Delete(root, recursive: true);
        }
    }
}
