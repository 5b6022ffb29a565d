using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MptcpAnycast.Kestrel.Rescue;
using MptcpAnycast.Rescue;

namespace MptcpAnycast.Tests.Rescue;

/// <summary>
/// <c>UseMptcpAnycastRescue</c> in a host whose Kestrel listens on 127.0.0.1:0. No case here gets as far as loading the
/// rescue program: each fails validation, is not configured, or fails binding the lookup socket to an address this host
/// lacks (which <see cref="RescueAgent.Start"/> does before it loads anything).
/// </summary>
public sealed class RescueHostingTests
{
    private const string Key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes
    private const string Unassigned4 = "198.51.100.77";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private static readonly string[] Valid =
    [
        "--MptcpAnycast:Rescue:Name=pop-a",
        "--MptcpAnycast:Rescue:Interface=lo",
        "--MptcpAnycast:Rescue:AnycastAddresses:0=192.0.2.100",
        $"--MptcpAnycast:Rescue:UnicastIPv4={Unassigned4}",
        "--MptcpAnycast:Rescue:Peers:0:Name=pop-b",
        "--MptcpAnycast:Rescue:Peers:0:UnicastIPv4=203.0.113.2",
        $"--MptcpAnycast:Rescue:Peers:0:Key={Key}",
    ];

    /// <summary>
    /// The generic host with the rescue agent added in a later <c>ConfigureWebHost</c> than Kestrel: the order in which
    /// its hosted service comes after Kestrel's, so that only validation at host start keeps Kestrel from listening.
    /// </summary>
    private static IHost GenericHost(string[] args, Action<RescueOptions>? configure = null, RecordingLogger? logger = null) =>
        new HostBuilder()
            .ConfigureAppConfiguration(c => c.AddCommandLine(args))
            .ConfigureLogging(l =>
            {
                l.ClearProviders();
                if (logger is not null)
                {
                    l.AddProvider(logger);
                }
            })
            .ConfigureWebHost(web => web
                .UseKestrel(k => k.Listen(IPAddress.Loopback, 0))
                .Configure(app => app.Run(context => context.Response.WriteAsync("ok"))))
            .ConfigureWebHost(web => web.UseMptcpAnycastRescue(configure))
            .Build();

    private static ICollection<string> Listening(IHost host) =>
        host.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;

    private static string[] With(params string[] args) => [.. Valid.Where(v => !args.Any(a => a.Split('=')[0] == v.Split('=')[0])), .. args];

    public static TheoryData<string, string[], string> BadSettings => new()
    {
        { "port 0", With("--MptcpAnycast:Rescue:Port=0"), "MptcpAnycast:Rescue:Port 0 is not a UDP port (1-65535)" },
        { "port not a number", With("--MptcpAnycast:Rescue:Port=abc"), "MptcpAnycast:Rescue:Port 'abc' is not a UDP port (1-65535)" },
        {
            "timeout not a time span", With("--MptcpAnycast:Rescue:LookupTimeout=250ms"),
            "MptcpAnycast:Rescue:LookupTimeout '250ms' is not a time span; write it as hh:mm:ss.fff"
        },
        { "MSS not a number", With("--MptcpAnycast:Rescue:MssIPv4=big"), "MptcpAnycast:Rescue:MssIPv4 'big' is not a whole number" },
        {
            "anycast list as one value", [.. Valid.Where(v => !v.Contains("AnycastAddresses", StringComparison.Ordinal)), "--MptcpAnycast:Rescue:AnycastAddresses=192.0.2.100"],
            "MptcpAnycast:Rescue:AnycastAddresses '192.0.2.100' is a list: write MptcpAnycast:Rescue:AnycastAddresses:0=192.0.2.100"
        },
        { "bad name", With("--MptcpAnycast:Rescue:Name=pop/a"), "MptcpAnycast:Rescue:Name 'pop/a' is not a POP name" },
        { "misspelt key", With("--MptcpAnycast:Rescue:LookupTimout=00:00:01"), "MptcpAnycast:Rescue:LookupTimout is not a rescue setting" },
        { "peer as one value", With("--MptcpAnycast:Rescue:Peers:1=pop-c"), "MptcpAnycast:Rescue:Peers:1 'pop-c' is one value; it is an object with Name" },
        { "lenient address", With("--MptcpAnycast:Rescue:Peers:0:UnicastIPv4=0x7f.1"), "MptcpAnycast:Rescue:Peers:0:UnicastIPv4 '0x7f.1' is not an IP address" },
        {
            "unicast is anycast", With($"--MptcpAnycast:Rescue:UnicastIPv4=192.0.2.100"),
            "MptcpAnycast:Rescue:UnicastIPv4 '192.0.2.100' is also MptcpAnycast:Rescue:AnycastAddresses:0"
        },
        {
            "only a unicast address", [$"--MptcpAnycast:Rescue:UnicastIPv4={Unassigned4}"],
            "MptcpAnycast:Rescue is only partly set (UnicastIPv4): MptcpAnycast:Rescue:Name, MptcpAnycast:Rescue:Interface, "
                + "MptcpAnycast:Rescue:AnycastAddresses are missing"
        },
        {
            "only the port", ["--MptcpAnycast:Rescue:Port=62202"],
            "MptcpAnycast:Rescue is only partly set (Port): MptcpAnycast:Rescue:Name, MptcpAnycast:Rescue:Interface, "
                + "MptcpAnycast:Rescue:AnycastAddresses, MptcpAnycast:Rescue:UnicastIPv4 (or :UnicastIPv6) are missing"
        },
        {
            "the default port, written out", ["--MptcpAnycast:Rescue:Port=62201", "--MptcpAnycast:Rescue:LookupTimeout=00:00:01"],
            "MptcpAnycast:Rescue is only partly set (LookupTimeout, Port): MptcpAnycast:Rescue:Name"
        },
        {
            "all but the interface", [.. Valid.Where(v => !v.Contains("Interface", StringComparison.Ordinal))],
            "MptcpAnycast:Rescue is only partly set (AnycastAddresses, Name, Peers, UnicastIPv4): MptcpAnycast:Rescue:Interface is missing; set it"
        },
    };

    [Theory]
    [MemberData(nameof(BadSettings))]
    public async Task A_bad_rescue_setting_stops_the_host_before_Kestrel_listens(string what, string[] args, string expected)
    {
        var logger = new RecordingLogger();
        using IHost host = GenericHost(args, logger: logger);

        var e = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync().WaitAsync(Timeout));

        Assert.True(e.Message.StartsWith(expected, StringComparison.Ordinal), $"{what}: {e.Message}");
        Assert.Equal(typeof(RescueOptions), e.OptionsType);
        Assert.Single(e.Failures);
        Assert.Empty(Listening(host));
        Assert.Equal(0, logger.Count(46) + logger.Count(47)); // the rescue service never started either
    }

    [Theory]
    [InlineData("no anycast list")]
    [InlineData("a null peer")]
    public async Task Null_lists_from_the_callback_are_refused_at_start(string what)
    {
        using IHost host = GenericHost(Valid, o =>
        {
            if (what == "a null peer")
            {
                o.Peers = [null!];
            }
            else
            {
                o.AnycastAddresses = null!;
            }
        });

        var e = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync().WaitAsync(Timeout));

        Assert.StartsWith(what == "a null peer"
                ? "MptcpAnycast:Rescue:Peers:0 is empty (null)"
                : "MptcpAnycast:Rescue is only partly set (Interface, Name, Peers, UnicastIPv4): MptcpAnycast:Rescue:AnycastAddresses is missing",
            e.Message, StringComparison.Ordinal);
        Assert.Empty(Listening(host));
    }

    [Fact]
    public async Task Nothing_set_starts_the_host_without_rescue_and_one_warning()
    {
        var logger = new RecordingLogger();
        using IHost host = GenericHost([], logger: logger);

        await host.StartAsync().WaitAsync(Timeout);
        try
        {
            Assert.NotEmpty(Listening(host)); // what the other tests see empty
            Assert.Contains("MptcpAnycast:Rescue is empty", Assert.Single(logger.Messages(46)), StringComparison.Ordinal);
            Assert.Null(host.Services.GetRequiredService<RescueHostedService>().Agent);
        }
        finally
        {
            await host.StopAsync().WaitAsync(Timeout);
        }
    }

    [Fact]
    public async Task No_peers_warns_and_an_address_this_host_lacks_stops_start_up_naming_it()
    {
        var logger = new RecordingLogger();
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder([.. Valid.Where(v => !v.Contains(":Peers:", StringComparison.Ordinal))]);
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(logger);
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0));
        builder.WebHost.UseMptcpAnycastRescue();
        await using WebApplication app = builder.Build();

        var e = await Assert.ThrowsAsync<RescueConfigurationException>(() => app.StartAsync().WaitAsync(Timeout));

        Assert.StartsWith($"MptcpAnycast:Rescue:UnicastIPv4 '{Unassigned4}' is not an address of this host", e.Message, StringComparison.Ordinal);
        (LogLevel level, _, string warning) = Assert.Single(logger.Entries, entry => entry.EventId == 47);
        Assert.Equal(LogLevel.Warning, level);
        Assert.StartsWith("MptcpAnycast:Rescue:Peers is empty", warning, StringComparison.Ordinal);
        Assert.Empty(Listening(app)); // a web application starts its own hosted services before Kestrel
    }

    [Fact]
    public void Validation_alone_accepts_empty_peers_and_checks_the_callback_s_values()
    {
        var validator = new RescueOptionsValidator();
        var options = new RescueOptions { Name = "pop-a", Interface = "lo", AnycastAddresses = ["192.0.2.100"], UnicastIPv4 = Unassigned4 };
        Assert.True(validator.Validate(null, options).Succeeded);
        Assert.True(validator.Validate(null, new RescueOptions()).Succeeded); // not configured: the service warns
        options.Port = -1;
        Assert.Equal("MptcpAnycast:Rescue:Port -1 is not a UDP port (1-65535)", validator.Validate(null, options).FailureMessage);
    }
}
