using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using MptcpAnycast.Kestrel;
using MptcpAnycast.Kestrel.Hosting;

namespace MptcpAnycast.Tests.Kestrel;

/// <summary>The validator the host runs at start: each bad setting becomes one failure that names it, its value and what is expected.</summary>
public sealed class MptcpAnycastOptionsValidatorTests
{
    public static TheoryData<string, string, string> BadSettings() => new()
    {
        { "Mode", "Mode=9", "MptcpAnycast:Mode = '9': must be one of Auto, Userspace, Kernel, None" },
        { "AnnounceOn", "AnnounceOn=9", "MptcpAnycast:AnnounceOn = '9': must be one of Accept, Demand" },
        { "AfterJoin", "AfterJoin=9", "MptcpAnycast:AfterJoin = '9': must be one of KeepBoth, PreferUnicast, MigrateToUnicast" },
        { "JoinTimeout", "JoinTimeout=5.00:00:00", "MptcpAnycast:JoinTimeout = '5.00:00:00': must be more than 0 and at most 1 hour; write it as [d.]hh:mm:ss[.fffffff], e.g. 00:00:05 for 5 seconds (a bare number such as 5 is read as 5 days)" },
        { "JoinTimeout", "JoinTimeout=00:00:00", "MptcpAnycast:JoinTimeout = '00:00:00': must be more than 0" },
        { "AnnounceDelay", "AnnounceDelay=00:10:01", "MptcpAnycast:AnnounceDelay = '00:10:01': must be from 0 (announce at accept) to 10 minutes; write it as [d.]hh:mm:ss[.fffffff], e.g. 00:00:00.200" },
        { "AnnouncementsPerClientPerMinute", "AnnouncementsPerClientPerMinute=-1", "MptcpAnycast:AnnouncementsPerClientPerMinute = '-1': must be from 0 (no limit) to 1000000" },
        { "EventSocketReceiveBufferSize", "EventSocketReceiveBufferSize=100", "MptcpAnycast:EventSocketReceiveBufferSize = '100': must be from 4096 (4 KiB)" },
        { "AnycastAddresses", "AnycastAddresses=192.0.2.300", "MptcpAnycast:AnycastAddresses = '192.0.2.300': not an IP address (write 192.0.2.1 or 2001:db8::1, no port)" },
        { "UnicastAddresses", "UnicastAddresses=192.0.2.300", "MptcpAnycast:UnicastAddresses = '192.0.2.300': not an address (write 192.0.2.10, 192.0.2.10:8443, 2001:db8::10 or [2001:db8::10]:8443, or auto)" },
        { "UnicastAddresses", "UnicastAddresses=192.0.2.10:0", "MptcpAnycast:UnicastAddresses = '192.0.2.10:0': port '0' is out of range (1-65535)" },
    };

    [Theory]
    [MemberData(nameof(BadSettings))]
    public void Each_bad_setting_fails_with_one_message_that_names_it_the_value_and_the_expected_form(string setting, string assignment, string message)
    {
        MptcpAnycastOptions options = Options(assignment);

        ValidateOptionsResult result = new MptcpAnycastOptionsValidator().Validate(Microsoft.Extensions.Options.Options.DefaultName, options);

        Assert.True(result.Failed);
        string failure = Assert.Single(result.Failures!);
        Assert.StartsWith(message, failure, StringComparison.Ordinal);
        Assert.Contains($"MptcpAnycast:{setting} = ", failure, StringComparison.Ordinal);
    }

    [Fact]
    public void Good_options_pass()
    {
        var options = new MptcpAnycastOptions { AllowUnassignedUnicastAddresses = true, JoinTimeout = TimeSpan.FromSeconds(2) };
        options.AnycastAddresses.Add("203.0.113.1");
        options.UnicastAddresses.Add("192.0.2.10:8443");

        Assert.True(new MptcpAnycastOptionsValidator().Validate(null, options).Succeeded);
    }

    [Fact]
    public void A_bare_number_of_seconds_binds_as_days_and_the_message_says_so()
    {
        // What --MptcpAnycast:JoinTimeout=5 becomes: the binder reads TimeSpan "5" as five days.
        Assert.Equal(TimeSpan.FromDays(5), TimeSpan.Parse("5", System.Globalization.CultureInfo.InvariantCulture));
        string failure = Assert.Single(new MptcpAnycastOptionsValidator().Validate(null, new MptcpAnycastOptions { JoinTimeout = TimeSpan.FromDays(5) }).Failures!);
        Assert.Contains("a bare number such as 5 is read as 5 days", failure);
    }

    [Theory]
    [InlineData("Mode", "Sometimes", "MptcpAnycast:Mode = 'Sometimes': must be one of Auto, Userspace, Kernel, None")]
    [InlineData("AnnounceOn", "Later", "MptcpAnycast:AnnounceOn = 'Later': must be one of Accept, Demand")]
    [InlineData("AfterJoin", "Drop", "MptcpAnycast:AfterJoin = 'Drop': must be one of KeepBoth, PreferUnicast, MigrateToUnicast")]
    // Comma lists: the binder ORs the names even without [Flags] (Userspace|Kernel is None, Accept|Demand is Demand).
    [InlineData("Mode", "Userspace,Kernel", "MptcpAnycast:Mode = 'Userspace,Kernel': must be one of Auto, Userspace, Kernel, None")]
    [InlineData("AnnounceOn", "Accept, Demand", "MptcpAnycast:AnnounceOn = 'Accept, Demand': must be one of Accept, Demand")]
    [InlineData("AfterJoin", "PreferUnicast,MigrateToUnicast", "MptcpAnycast:AfterJoin = 'PreferUnicast,MigrateToUnicast': must be one of KeepBoth")]
    [InlineData("Mode", "Kernel,", "MptcpAnycast:Mode = 'Kernel,': must be one of")]
    [InlineData("Mode", "9", "MptcpAnycast:Mode = '9': must be one of Auto, Userspace, Kernel, None")]
    [InlineData("AnnounceOn", "-1", "MptcpAnycast:AnnounceOn = '-1': must be one of Accept, Demand")]
    [InlineData("JoinTimeout", "5s", "MptcpAnycast:JoinTimeout = '5s': is not a time span; write it as [d.]hh:mm:ss[.fffffff], e.g. 00:00:05 for 5 seconds")]
    [InlineData("AnnounceDelay", "200ms", "MptcpAnycast:AnnounceDelay = '200ms': is not a time span; write it as [d.]hh:mm:ss[.fffffff], e.g. 00:00:00.200 for 200 ms")]
    [InlineData("ConfigureHost", "yes", "MptcpAnycast:ConfigureHost = 'yes': must be true or false")]
    [InlineData("AllowUnassignedUnicastAddresses", "1", "MptcpAnycast:AllowUnassignedUnicastAddresses = '1': must be true or false")]
    [InlineData("AnnouncementsPerClientPerMinute", "ten", "MptcpAnycast:AnnouncementsPerClientPerMinute = 'ten': must be a whole number")]
    [InlineData("EventSocketReceiveBufferSize", "4MiB", "MptcpAnycast:EventSocketReceiveBufferSize = '4MiB': must be a number of bytes")]
    [InlineData("AnycastAddresses", "203.0.113.1", "MptcpAnycast:AnycastAddresses = '203.0.113.1': is a list: write MptcpAnycast:AnycastAddresses:0=203.0.113.1")]
    [InlineData("UnicastAddresses", "auto", "MptcpAnycast:UnicastAddresses = 'auto': is a list: write MptcpAnycast:UnicastAddresses:0=192.0.2.10")]
    public void Text_the_binder_cannot_convert_fails_validation_with_the_setting_instead_of_a_binder_exception(string key, string value, string message)
    {
        IConfiguration configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { [$"MptcpAnycast:{key}"] = value })
            .Build();
        using ServiceProvider services = new ServiceCollection().AddSingleton(configuration).AddMptcpAnycastOptions().Services.BuildServiceProvider();

        var ex = Assert.Throws<OptionsValidationException>(() => services.GetRequiredService<IOptions<MptcpAnycastOptions>>().Value);

        Assert.StartsWith(message, Assert.Single(ex.Failures), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("MptcpAnycast:JoinTimout", "00:00:05", "MptcpAnycast:JoinTimout is not a transport setting; the transport settings are Mode, AnycastAddresses,")]
    [InlineData("MptcpAnycast:Mode:0", "Kernel", "MptcpAnycast:Mode takes one value, not a list or an object")]
    [InlineData("MptcpAnycast:UnicastAddresses:first", "192.0.2.10", "MptcpAnycast:UnicastAddresses is a list, not an object ('first' is not an entry's number)")]
    [InlineData("MptcpAnycast:AnycastAddresses:0:Address", "203.0.113.1", "MptcpAnycast:AnycastAddresses:0 takes one value, not a list or an object")]
    public void A_shape_the_binder_would_drop_without_a_word_fails_validation_naming_the_key(string key, string value, string message)
    {
        IConfiguration configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { [key] = value, ["MptcpAnycast:Rescue:Name"] = "pop-a" })
            .Build();
        using ServiceProvider services = new ServiceCollection().AddSingleton(configuration).AddMptcpAnycastOptions().Services.BuildServiceProvider();

        var ex = Assert.Throws<OptionsValidationException>(() => services.GetRequiredService<IOptions<MptcpAnycastOptions>>().Value);

        Assert.StartsWith(message, Assert.Single(ex.Failures), StringComparison.Ordinal);
    }

    [Fact]
    public void The_rescue_section_inside_the_transport_s_is_left_to_the_rescue_check()
    {
        IConfiguration configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { ["MptcpAnycast:Rescue:Peers:0:Name"] = "pop-b", ["MptcpAnycast:mode"] = "none" })
            .Build();
        using ServiceProvider services = new ServiceCollection().AddSingleton(configuration).AddMptcpAnycastOptions().Services.BuildServiceProvider();
        Assert.Equal(AnnouncementMode.None, services.GetRequiredService<IOptions<MptcpAnycastOptions>>().Value.Mode);
    }

    [Theory]
    [InlineData("Mode", "kernel")] // the binder's conversions: any case, numbers for enums, invariant time spans
    [InlineData("Mode", "3")]
    [InlineData("Mode", " Userspace ")]
    [InlineData("AnnounceOn", "demand")]
    [InlineData("AfterJoin", "2")]
    [InlineData("JoinTimeout", "00:00:02.5")]
    [InlineData("ConfigureHost", "True")]
    [InlineData("EventSocketReceiveBufferSize", "")]
    public void Text_the_binder_converts_is_left_to_it(string key, string value)
    {
        IConfiguration configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { [$"MptcpAnycast:{key}"] = value })
            .Build();

        Assert.Null(MptcpAnycastOptionsBinding.CheckText(configuration.GetSection(MptcpAnycastOptions.SectionName)));
        var options = new MptcpAnycastOptions();
        MptcpAnycastOptionsBinding.Bind(configuration.GetSection(MptcpAnycastOptions.SectionName), options);
        Assert.Null(options.BindingProblem);
    }

    [Theory]
    [InlineData("Mode", "none", "None")]
    [InlineData("Mode", "0", "Auto")]
    [InlineData("AnnounceOn", " Demand ", "Demand")]
    [InlineData("AfterJoin", "MigrateToUnicast", "MigrateToUnicast")]
    public void One_name_or_number_binds_to_that_value(string key, string value, string bound)
    {
        IConfiguration configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { [$"MptcpAnycast:{key}"] = value })
            .Build();
        using ServiceProvider services = new ServiceCollection().AddSingleton(configuration).AddMptcpAnycastOptions().Services.BuildServiceProvider();

        MptcpAnycastOptions options = services.GetRequiredService<IOptions<MptcpAnycastOptions>>().Value;

        object actual = key switch
        {
            "Mode" => options.Mode,
            "AnnounceOn" => options.AnnounceOn,
            _ => options.AfterJoin,
        };
        Assert.Equal(bound, actual.ToString());
    }

    private static MptcpAnycastOptions Options(string assignment)
    {
        var options = new MptcpAnycastOptions { AllowUnassignedUnicastAddresses = true };
        string[] parts = assignment.Split('=', 2);
        string value = parts[1];
        var c = System.Globalization.CultureInfo.InvariantCulture;
        switch (parts[0])
        {
            case "Mode": options.Mode = (AnnouncementMode)int.Parse(value, c); break;
            case "AnnounceOn": options.AnnounceOn = (AnnounceOn)int.Parse(value, c); break;
            case "AfterJoin": options.AfterJoin = (AfterJoinPolicy)int.Parse(value, c); break;
            case "JoinTimeout": options.JoinTimeout = TimeSpan.Parse(value, c); break;
            case "AnnounceDelay": options.AnnounceDelay = TimeSpan.Parse(value, c); break;
            case "AnnouncementsPerClientPerMinute": options.AnnouncementsPerClientPerMinute = int.Parse(value, c); break;
            case "EventSocketReceiveBufferSize": options.EventSocketReceiveBufferSize = int.Parse(value, c); break;
            case "AnycastAddresses": options.AnycastAddresses.Add(value); break;
            case "UnicastAddresses": options.UnicastAddresses.Add(value); break;
            default: throw new ArgumentException(assignment);
        }

        return options;
    }
}
