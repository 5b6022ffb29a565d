using System.Globalization;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using MptcpAnycast.Rescue;

namespace MptcpAnycast.Kestrel.Hosting;

/// <summary>
/// Binds <see cref="MptcpAnycastOptions"/> from the <c>MptcpAnycast</c> section and validates them when the host
/// starts. Text the binder cannot convert (<c>JoinTimeout=abc</c>, <c>Mode=Sometimes</c>), text it would convert to a
/// value nobody wrote (<c>Mode=Userspace,Kernel</c>, which it reads as <c>None</c>) and a list written as
/// one value (<c>UnicastAddresses=192.0.2.10</c>, which the binder silently ignores) are found before binding and
/// reported by the validator like any other bad setting: one message with the setting, the value and the expected
/// form, instead of the binder's exception.
/// </summary>
internal static class MptcpAnycastOptionsBinding
{
    // A misspelt key, or a list or an object where one value belongs, would leave the default in place without a word.
    private static readonly ConfigurationShape Shape = ConfigurationShape.Object("transport setting",
        (nameof(MptcpAnycastOptions.Mode), ConfigurationShape.Value),
        (nameof(MptcpAnycastOptions.AnycastAddresses), ConfigurationShape.List(ConfigurationShape.Value, "=203.0.113.1")),
        (nameof(MptcpAnycastOptions.UnicastAddresses), ConfigurationShape.List(ConfigurationShape.Value, "=192.0.2.10")),
        (nameof(MptcpAnycastOptions.AnnounceOn), ConfigurationShape.Value),
        (nameof(MptcpAnycastOptions.AnnounceDelay), ConfigurationShape.Value),
        (nameof(MptcpAnycastOptions.AfterJoin), ConfigurationShape.Value),
        (nameof(MptcpAnycastOptions.JoinTimeout), ConfigurationShape.Value),
        (nameof(MptcpAnycastOptions.ConfigureHost), ConfigurationShape.Value),
        (nameof(MptcpAnycastOptions.AnnouncementsPerClientPerMinute), ConfigurationShape.Value),
        (nameof(MptcpAnycastOptions.AllowUnassignedUnicastAddresses), ConfigurationShape.Value),
        (nameof(MptcpAnycastOptions.EventSocketReceiveBufferSize), ConfigurationShape.Value),
        (RescueOptions.SectionName.Split(':')[^1], ConfigurationShape.Any)); // the rescue agent's, checked by RescueSettingsText

    public static OptionsBuilder<MptcpAnycastOptions> AddMptcpAnycastOptions(this IServiceCollection services)
    {
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<MptcpAnycastOptions>, MptcpAnycastOptionsValidator>());
        return services.AddOptions<MptcpAnycastOptions>()
            .Configure<IConfiguration>(static (options, configuration) => Bind(configuration.GetSection(MptcpAnycastOptions.SectionName), options))
            .ValidateOnStart();
    }

    /// <summary>Binds <paramref name="section"/> into <paramref name="options"/>, or records why its text cannot be bound.</summary>
    public static void Bind(IConfigurationSection section, MptcpAnycastOptions options)
    {
        // The text first: a list written as one value gets its own message, with the JSON form.
        if (CheckText(section) is MptcpAnycastConfigurationException problem)
        {
            options.BindingProblem = problem.Message;
            return;
        }

        if (Shape.Check(section, MptcpAnycastOptions.SectionName) is string shape)
        {
            options.BindingProblem = shape;
            return;
        }

        section.Bind(options);
    }

    /// <summary>
    /// The first value the binder would fail to convert, judged by the binder's own conversions (invariant culture,
    /// enum names in any case or their numbers), or that it would convert to something other than what was written
    /// (a comma list of enum names), or null. Empty values are left to the binder.
    /// </summary>
    internal static MptcpAnycastConfigurationException? CheckText(IConfigurationSection section)
    {
        CultureInfo c = CultureInfo.InvariantCulture;
        return Enum<AnnouncementMode>(section, nameof(MptcpAnycastOptions.Mode))
            ?? Enum<AnnounceOn>(section, nameof(MptcpAnycastOptions.AnnounceOn))
            ?? Enum<AfterJoinPolicy>(section, nameof(MptcpAnycastOptions.AfterJoin))
            ?? Check(section, nameof(MptcpAnycastOptions.JoinTimeout), v => TimeSpan.TryParse(v, c, out _),
                MptcpAnycastSettings.TimeSpanProblem("is not a time span", "00:00:05", "5 seconds"))
            ?? Check(section, nameof(MptcpAnycastOptions.AnnounceDelay), v => TimeSpan.TryParse(v, c, out _),
                MptcpAnycastSettings.TimeSpanProblem("is not a time span", "00:00:00.200", "200 ms"))
            ?? Check(section, nameof(MptcpAnycastOptions.ConfigureHost), v => bool.TryParse(v, out _), "must be true or false")
            ?? Check(section, nameof(MptcpAnycastOptions.AllowUnassignedUnicastAddresses), v => bool.TryParse(v, out _), "must be true or false")
            ?? Check(section, nameof(MptcpAnycastOptions.AnnouncementsPerClientPerMinute), v => int.TryParse(v, NumberStyles.Integer, c, out _),
                "must be a whole number from 0 (no limit) to 1000000")
            ?? Check(section, nameof(MptcpAnycastOptions.EventSocketReceiveBufferSize), v => int.TryParse(v, NumberStyles.Integer, c, out _),
                "must be a number of bytes from 4096 to 268435456")
            ?? List(section, nameof(MptcpAnycastOptions.AnycastAddresses), "203.0.113.1")
            ?? List(section, nameof(MptcpAnycastOptions.UnicastAddresses), "192.0.2.10");
    }

    private static MptcpAnycastConfigurationException? Check(IConfigurationSection section, string key, Func<string, bool> converts, string problem)
    {
        string? value = section[key];
        return string.IsNullOrEmpty(value) || converts(value) ? null : new MptcpAnycastConfigurationException(key, value, problem);
    }

    /// <summary>
    /// Exactly one defined name (any case) or the number of one. The binder reads <c>A,B</c> as <c>A | B</c> even for
    /// an enum without [Flags], so two names would become a third value (<c>Userspace,Kernel</c> is <c>None</c>), and an
    /// undefined number would be reported as that number rather than as the text written.
    /// </summary>
    private static MptcpAnycastConfigurationException? Enum<T>(IConfigurationSection section, string key) where T : struct, Enum =>
        Check(section, key, static v => !v.Contains(',', StringComparison.Ordinal) && System.Enum.TryParse(v, ignoreCase: true, out T parsed) && System.Enum.IsDefined(parsed),
            $"must be one of {string.Join(", ", System.Enum.GetNames<T>())}");

    /// <summary>A list written as a single value: the binder would drop it without a word.</summary>
    private static MptcpAnycastConfigurationException? List(IConfigurationSection section, string key, string example)
    {
        string? value = section[key];
        return string.IsNullOrEmpty(value) ? null : new MptcpAnycastConfigurationException(key, value,
            $"is a list: write MptcpAnycast:{key}:0={example} (command line --MptcpAnycast:{key}:0={example}, environment "
            + $"MptcpAnycast__{key}__0={example}, JSON \"{key}\": [\"{example}\"]), and :1 for a second entry");
    }
}
