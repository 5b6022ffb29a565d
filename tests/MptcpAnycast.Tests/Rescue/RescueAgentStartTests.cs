using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using MptcpAnycast.Rescue;
using MptcpAnycast.Rescue.Ownership;

namespace MptcpAnycast.Tests.Rescue;

/// <summary>
/// <see cref="RescueAgent.Start"/> refusing what it cannot run with before it loads the program: every case here fails
/// before <c>RescueDataplane.Load</c>, so nothing is loaded or attached whatever the test's privileges. Run unprivileged
/// in the wrong order, the load would fail first (a <see cref="RescueDataplaneException"/>); run as root, the raw
/// sockets would (the same type): either way these tests would see the wrong exception.
/// </summary>
public sealed class RescueAgentStartTests
{
    private const string Key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes

    // Documentation ranges, checked below not to be this host's.
    private const string Unassigned4 = "198.51.100.77";
    private const string Unassigned6 = "2001:db8:77::77";

    [Theory]
    [InlineData(1, 1)] // a quarter would be under a second
    [InlineData(8, 2)]
    [InlineData(600, 30)] // the default timeout: at most 30 s between walks of the owner map
    public void Idle_owner_entries_are_looked_for_every_quarter_of_the_timeout_between_1_and_30_seconds(int timeoutSeconds, int everySeconds) =>
        Assert.Equal(TimeSpan.FromSeconds(everySeconds), RescueAgent.ExpiryInterval(TimeSpan.FromSeconds(timeoutSeconds)));

    private static RescueOptions Valid() => new()
    {
        Name = "pop-a",
        Interface = "lo",
        AnycastAddresses = ["192.0.2.100", "2001:db8:ac::1"],
        UnicastIPv4 = Unassigned4,
        Peers = [new RescuePeerOptions { Name = "pop-b", UnicastIPv4 = "203.0.113.2", UnicastIPv6 = "2001:db8:b::2", Key = Key }],
    };

    [Fact]
    public void Null_lists_and_a_null_peer_are_configuration_errors_not_a_crash()
    {
        RescueOptions options = Valid();
        options.AnycastAddresses = null!;
        var e = Assert.Throws<RescueConfigurationException>(() => RescueAgent.Start(options));
        Assert.StartsWith("MptcpAnycast:Rescue:AnycastAddresses is empty", e.Message, StringComparison.Ordinal);

        options = Valid();
        options.Peers = [null!];
        e = Assert.Throws<RescueConfigurationException>(() => RescueAgent.Start(options, settingsPrefix: "rescue"));
        Assert.StartsWith("rescue:Peers:0 is empty (null)", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_unicast_address_this_host_lacks_is_named_with_its_setting_before_the_program_is_loaded(bool ipv6)
    {
        Assert.DoesNotContain(NetworkInterface.GetAllNetworkInterfaces().SelectMany(n => n.GetIPProperties().UnicastAddresses),
            a => a.Address.Equals(IPAddress.Parse(Unassigned4)) || a.Address.Equals(IPAddress.Parse(Unassigned6)));
        RescueOptions options = Valid();
        if (ipv6)
        {
            options.UnicastIPv4 = null;
            options.UnicastIPv6 = Unassigned6;
        }

        var e = Assert.Throws<RescueConfigurationException>(() => RescueAgent.Start(options));

        string setting = ipv6 ? $"MptcpAnycast:Rescue:UnicastIPv6 '{Unassigned6}'" : $"MptcpAnycast:Rescue:UnicastIPv4 '{Unassigned4}'";
        Assert.StartsWith($"{setting} is not an address of this host", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_lookup_port_in_use_is_named_with_the_port_and_the_address()
    {
        // Loopback, which the settings refuse, is the one address every test machine has: the settings are built directly.
        // A port below the ephemeral range: an ephemeral one could be the very port another test (run in parallel) was
        // just given by PeerKit.FreePort and is about to bind.
        using var holder = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        int port = 20000;
        for (; ; port++)
        {
            try
            {
                holder.Bind(new IPEndPoint(IPAddress.Loopback, port));
                break;
            }
            catch (SocketException) when (port < 20999)
            {
            }
        }

        var settings = new RescueSettings
        {
            Name = "pop-a",
            Interface = "lo",
            InterfaceIndex = 1,
            Anycast = [IPAddress.Parse("192.0.2.100")],
            UnicastIPv4 = IPAddress.Loopback,
            Peers = [],
            Port = port,
            LookupTimeout = TimeSpan.FromMilliseconds(250),
            LookupsPerSecond = 2000,
            OwnerIdleTimeout = TimeSpan.FromMinutes(10),
            MssIPv4 = 1400,
            MssIPv6 = 1400,
        };
        using SocketTableLookup table = SocketTableLookup.Open();

        // Start checks the port before it loads the program, and the channel's own bind says the same.
        var early = Assert.Throws<RescueConfigurationException>(() => RescueAgent.CheckLookupPort(settings, "MptcpAnycast:Rescue"));
        var e = Assert.Throws<RescueConfigurationException>(() => RescueAgent.OpenChannel(settings, "MptcpAnycast:Rescue", table).Dispose());

        foreach (string message in new[] { early.Message, e.Message })
        {
            Assert.StartsWith($"MptcpAnycast:Rescue:Port {port}: UDP port {port} on 127.0.0.1 (MptcpAnycast:Rescue:UnicastIPv4) is already in use",
                message, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("""{ "writtenAt": "NOW", "interface": "eth0", "programIds": [ 103, 104 ] }""", 103u, 104u)]
    [InlineData("""{ "writtenAt": "2000-01-01T00:00:00+00:00", "interface": "eth0", "programIds": [ 103, 104 ] }""", 0u, 0u)] // before this boot
    [InlineData("""{ "interface": "eth0", "programIds": [ 103, 104 ] }""", 0u, 0u)] // no time
    [InlineData("""{ "writtenAt": "NOW", "interface": "eth1", "programIds": [ 103, 104 ] }""", 0u, 0u)] // another interface: not these hooks
    [InlineData("""{ "writtenAt": "NOW", "interface": "eth0" }""", 0u, 0u)] // an agent from before the ids were recorded
    [InlineData("""{ "writtenAt": "NOW", "interface": "eth0", "programIds": [ 103 ] }""", 0u, 0u)]
    [InlineData("""{ "writtenAt": "NOW", "interface": "eth0", "programIds": [ -1, 104 ] }""", 0u, 0u)]
    [InlineData("""{ "writtenAt": "NOW", "interface": "eth0", "programIds": [ "103", "104" ] }""", 0u, 0u)]
    [InlineData("""{ "writtenAt": "NOW", "interface": 7, "programIds": [ 103, 104 ] }""", 0u, 0u)]
    [InlineData("""[ 103, 104 ]""", 0u, 0u)]
    [InlineData("""{ "writtenAt": "NOW", "interface": "eth0", "programIds": [ 103, 1""", 0u, 0u)] // cut off while being written
    [InlineData("", 0u, 0u)]
    public void A_restarted_agent_takes_its_predecessors_program_ids_only_from_a_whole_status_file_of_the_same_interface_written_since_boot(string text, uint ingress, uint egress)
    {
        string directory = Directory.CreateTempSubdirectory("mptcp-anycast-status-").FullName;
        try
        {
            var settings = new RescueSettings
            {
                Name = "pop-a",
                Interface = "eth0",
                InterfaceIndex = 2,
                Anycast = [IPAddress.Parse("192.0.2.100")],
                UnicastIPv4 = IPAddress.Parse(Unassigned4),
                Peers = [],
                Port = 62201,
                LookupTimeout = TimeSpan.FromMilliseconds(250),
                LookupsPerSecond = 2000,
                OwnerIdleTimeout = TimeSpan.FromMinutes(10),
                MssIPv4 = 1400,
                MssIPv6 = 1400,
                StatusDirectory = directory,
            };
            Assert.Equal((0u, 0u), RescueAgent.EarlierPrograms(settings)); // no file yet
            AssertNoRegularFileIsRead(settings, RescueAgent.StatusPath(directory, "pop-a"));

            File.WriteAllText(RescueAgent.StatusPath(directory, "pop-a"), text.Replace("NOW", DateTimeOffset.UtcNow.ToString("O"), StringComparison.Ordinal));

            Assert.Equal((ingress, egress), RescueAgent.EarlierPrograms(settings));
            Assert.Equal((0u, 0u), RescueAgent.EarlierPrograms(settings with { StatusDirectory = null }));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>
    /// A FIFO where the status file belongs held a starting agent in open(2), deaf to SIGTERM with its lookup port
    /// bound; a link to /dev/zero would be read without end. Neither is an agent's file: no ids, at once.
    /// </summary>
    private static void AssertNoRegularFileIsRead(RescueSettings settings, string path)
    {
        foreach (Action make in new Action[] { () => MakeFifo(path), () => File.CreateSymbolicLink(path, "/dev/zero") })
        {
            make();
            try
            {
                Task<(uint, uint)> read = Task.Run(() => RescueAgent.EarlierPrograms(settings));
                Assert.True(read.Wait(TimeSpan.FromSeconds(10)), $"EarlierPrograms did not return for {path}");
                Assert.Equal((0u, 0u), read.Result);
            }
            finally
            {
                File.Delete(path);
            }
        }
    }

    private static unsafe void MakeFifo(string path)
    {
        byte[] name = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = name)
        {
            Assert.Equal(0, Tmds.Linux.LibC.mkfifo(p, 0x180));
        }
    }
}
