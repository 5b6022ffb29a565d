using System.Net;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using MptcpAnycast.Kestrel;
using MptcpAnycast.Kestrel.Hosting;

namespace MptcpAnycast.Tests.Kestrel;

/// <summary>
/// Malformed configuration, generated (fixed seed), bound and validated as <c>UseMptcpAnycast</c> registers it: the only
/// outcomes allowed are valid settings or one <see cref="OptionsValidationException"/> whose message names the setting
/// (<c>MptcpAnycast:Name = 'value': ...</c>). Never the binder's own exception, never another one.
/// </summary>
public sealed class ConfigurationFuzzTests
{
    private const int Seed = 20261126;
    private const int Iterations = 3000;

    private static readonly string[] Keys =
    [
        "Mode", "AnnounceOn", "AfterJoin", "JoinTimeout", "ConfigureHost", "AllowUnassignedUnicastAddresses",
        "AnnouncementsPerClientPerMinute", "EventSocketReceiveBufferSize", "AnnounceDelay", "AnycastAddresses:0", "AnycastAddresses:1", "UnicastAddresses:0", "UnicastAddresses:1",
    ];

    private static readonly string[] Seeds =
    [
        "Userspace", "kernel", "Demand", "PreferUnicast", "00:00:05", "true", "12", "203.0.113.1", "192.0.2.10:8443",
        "[2001:db8::10]:9443", "2001:db8::10", "auto", "", " ", "-1", "99999999999999999999", "NaN", "1e9", "::", "[::]:0",
        "0.0.0.0", "255.255.255.255:65535", "1.2.3", "::ffff:1.2.3.4", "fe80::1%eth0", "\u00e9\u4e2d", "\0", "Mode", "{}",
    ];

    [Fact]
    public void Malformed_configuration_gives_only_typed_errors()
    {
        var random = new Random(Seed);
        IPAddress[] host = [IPAddress.Parse("192.0.2.10"), IPAddress.Parse("2001:db8::10")];
        int valid = 0, rejected = 0;
        for (int i = 0; i < Iterations; i++)
        {
            var values = new Dictionary<string, string?>();
            int count = random.Next(1, 5);
            for (int k = 0; k < count; k++)
            {
                values[$"MptcpAnycast:{Keys[random.Next(Keys.Length)]}"] = Mutate(Seeds[random.Next(Seeds.Length)], random);
            }

            IConfiguration configuration = new ConfigurationBuilder().AddInMemoryCollection(values).Build();
            using ServiceProvider services = new ServiceCollection()
                .AddSingleton(configuration)
                .AddMptcpAnycastOptions().Services
                .BuildServiceProvider();
            try
            {
                MptcpAnycastOptions options = services.GetRequiredService<IOptions<MptcpAnycastOptions>>().Value;
                MptcpAnycastSettings.Validate(options, host); // the addresses of a host of its own (the validator read this one's)
                valid++;
            }
            catch (OptionsValidationException ex) when (ex.Failures.Count() == 1 && ex.Message.StartsWith("MptcpAnycast:", StringComparison.Ordinal))
            {
                rejected++;
            }
            catch (MptcpAnycastConfigurationException)
            {
                rejected++; // valid text, but not for the fixed host above
            }
            catch (Exception ex)
            {
                Assert.Fail($"iteration {i} ({string.Join(", ", values.Select(kv => $"{kv.Key}='{kv.Value}'"))}): {ex.GetType().Name}: {ex.Message}");
            }
        }

        Assert.True(valid >= 10 && rejected > 100, $"the generator is too one-sided: {valid} valid, {rejected} rejected");
    }

    private static string Mutate(string value, Random random)
    {
        if (value.Length == 0 || random.Next(3) == 0)
        {
            return value;
        }

        char[] chars = value.ToCharArray();
        int edits = random.Next(1, 3);
        for (int e = 0; e < edits; e++)
        {
            int at = random.Next(chars.Length);
            chars[at] = random.Next(4) switch
            {
                0 => (char)random.Next(32, 127),
                1 => ':',
                2 => '.',
                _ => (char)('0' + random.Next(10)),
            };
        }

        return new string(chars);
    }
}
