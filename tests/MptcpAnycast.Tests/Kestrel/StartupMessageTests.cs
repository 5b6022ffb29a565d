using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging;
using MptcpAnycast.Kestrel;
using MptcpAnycast.Kestrel.Hosting;
using MptcpAnycast.Tests.Control;

namespace MptcpAnycast.Tests.Kestrel;

/// <summary>What start-up says to the operator: the start-up line, and the way out of a Kernel mode without its endpoint.</summary>
public sealed class StartupMessageTests
{
    private static readonly IPAddress[] Host = [IPAddress.Parse("192.0.2.10"), IPAddress.Parse("2001:db8::10"), IPAddress.Parse("203.0.113.1"), IPAddress.Loopback];

    private static MptcpAnycastSettings Settings(AnnouncementMode mode, params string[] unicast)
    {
        var options = new MptcpAnycastOptions { Mode = mode };
        options.AnycastAddresses.Add("203.0.113.1");
        foreach (string u in unicast)
        {
            options.UnicastAddresses.Add(u);
        }

        return MptcpAnycastSettings.Validate(options, Host);
    }

    [Fact]
    public void The_start_up_line_says_the_port_of_each_connection_instead_of_port_0()
    {
        MptcpAnycastSettings settings = Settings(AnnouncementMode.Userspace, "192.0.2.10", "[2001:db8::10]:8443");

        string text = MptcpTransportFactory.DescribeUnicast(settings.Unicast, AnnouncementMode.Userspace);

        Assert.Equal("192.0.2.10 (on the port of each connection), [2001:db8::10]:8443", text);
        Assert.DoesNotContain(":0", text, StringComparison.Ordinal);
        Assert.Equal("nothing", MptcpTransportFactory.DescribeUnicast(settings.Unicast, AnnouncementMode.None));
        Assert.Equal("nothing", MptcpTransportFactory.DescribeUnicast([], AnnouncementMode.Userspace));
    }

    [Fact]
    public void Auto_chooses_this_hosts_global_addresses_and_remembers_which()
    {
        MptcpAnycastSettings settings = Settings(AnnouncementMode.Auto, "auto");

        Assert.True(settings.UnicastFromAuto);
        Assert.Equal([IPEndPoint.Parse("192.0.2.10:0"), IPEndPoint.Parse("[2001:db8::10]:0")], settings.ChosenByAuto);
        Assert.Equal(settings.Unicast, settings.ChosenByAuto);
        Assert.False(Settings(AnnouncementMode.Auto, "192.0.2.10").UnicastFromAuto);
    }

    [Fact]
    public void Auto_on_a_kernel_path_manager_without_a_signal_endpoint_says_what_to_run_or_set()
    {
        MptcpAnycastSettings settings = Settings(AnnouncementMode.Auto, "auto");
        IPEndPoint chosen = settings.Unicast[0];

        MptcpAnycastConfigurationException ex = HostPreparation.MissingSignalEndpoint(settings, chosen, "ip mptcp endpoint add 192.0.2.10 dev eth0 signal");

        Assert.Equal("UnicastAddresses", ex.Setting);
        Assert.Equal("auto (192.0.2.10)", ex.Value);
        Assert.StartsWith("MptcpAnycast:UnicastAddresses = 'auto (192.0.2.10)': Mode = Auto chose Kernel mode because this network namespace runs the in-kernel path manager", ex.Message, StringComparison.Ordinal);
        Assert.Contains("run 'ip mptcp endpoint add 192.0.2.10 dev eth0 signal'", ex.Message);
        Assert.Contains("set MptcpAnycast:ConfigureHost = true", ex.Message);
        Assert.Contains("sysctl -w net.mptcp.path_manager=userspace", ex.Message);
    }

    /// <summary>
    /// Mode = Auto with settings that only the userspace path manager honours: Validate cannot refuse them (the mode is
    /// not known yet), so the transport warns once it has chosen Kernel mode, and says nothing when it chose Userspace.
    /// </summary>
    [Theory]
    [InlineData(AnnouncementMode.Kernel, 1)]
    [InlineData(AnnouncementMode.Userspace, 0)]
    public async Task Auto_that_chose_kernel_mode_warns_about_demand_a_rate_limit_and_a_delay(AnnouncementMode chosen, int warnings)
    {
        var demand = new MptcpAnycastOptions { AnnounceOn = AnnounceOn.Demand, AnnouncementsPerClientPerMinute = 10 };
        demand.UnicastAddresses.Add("127.0.0.2"); // Userspace mode listens for joins on it: an address this host can bind
        var delayed = new MptcpAnycastOptions { AnnounceDelay = TimeSpan.FromMilliseconds(200) };
        delayed.UnicastAddresses.Add("127.0.0.2");

        RecordingLogger onDemand = await StartAsync(MptcpAnycastSettings.Validate(demand, [ControlPathHarness.UnicastAddress]), chosen);
        RecordingLogger onDelay = await StartAsync(MptcpAnycastSettings.Validate(delayed, [ControlPathHarness.UnicastAddress]), chosen);

        Assert.Equal(warnings, onDemand.Count(26));
        Assert.Equal(warnings, onDemand.Count(27));
        Assert.Equal(0, onDemand.Count(23));
        Assert.Equal(warnings, onDelay.Count(23));
        Assert.Equal(0, onDelay.Count(26) + onDelay.Count(27));
        if (warnings > 0)
        {
            Assert.Equal(LogLevel.Warning, Assert.Single(onDemand.Entries, e => e.EventId == 26).Level);
            Assert.Contains("AnnounceOn = Demand needs the userspace path manager; Mode = Auto chose Kernel mode", Assert.Single(onDemand.Messages(26)));
            Assert.Contains("AnnouncementsPerClientPerMinute = 10 needs the userspace path manager", Assert.Single(onDemand.Messages(27)));
        }

        static async Task<RecordingLogger> StartAsync(MptcpAnycastSettings settings, AnnouncementMode chosen)
        {
            var logger = new RecordingLogger();
            using var loggers = new LoggerFactory([logger]);
            var pathManager = new FakePathManager();
            await using var factory = new MptcpTransportFactory(settings, new SocketTransportOptions(), loggers, MetricRecorder.CreateFactory(), TimeProvider.System,
                _ => Task.FromResult(new HostPreparation { Mode = chosen, MptcpSupported = true, PathManager = pathManager }));
            IConnectionListener listener = await factory.BindAsync(new IPEndPoint(IPAddress.Loopback, 0)).AsTask().WaitAsync(TaskTimeoutExtensions.Within());
            await listener.DisposeAsync();
            Assert.Equal(1, logger.Count(4)); // started
            return logger;
        }
    }

    [Fact]
    public void Explicit_kernel_mode_without_a_signal_endpoint_names_the_address_and_the_command()
    {
        MptcpAnycastSettings settings = Settings(AnnouncementMode.Kernel, "192.0.2.10");

        MptcpAnycastConfigurationException ex = HostPreparation.MissingSignalEndpoint(settings, settings.Unicast[0], "ip mptcp endpoint add 192.0.2.10 signal");

        Assert.Equal("MptcpAnycast:UnicastAddresses = '192.0.2.10': Mode = Kernel needs a kernel 'signal' endpoint for it and there is none; "
            + "run 'ip mptcp endpoint add 192.0.2.10 signal', or set MptcpAnycast:ConfigureHost = true", ex.Message);
    }
}
