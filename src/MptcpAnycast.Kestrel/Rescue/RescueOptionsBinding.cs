using System.Runtime.CompilerServices;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using MptcpAnycast.Rescue;

namespace MptcpAnycast.Kestrel.Rescue;

/// <summary>
/// Binds <see cref="RescueOptions"/> from <c>MptcpAnycast:Rescue</c> and validates them when the host starts, before
/// any hosted service (Kestrel's included) starts. Text the binder cannot convert (<c>Port=abc</c>) and a list written
/// as one value are found before binding and reported by the validator like any other bad setting, instead of as the
/// binder's exception.
/// </summary>
internal static class RescueOptionsBinding
{
    private const string Section = RescueOptions.SectionName;

    // RescueOptions is the core's public type and has no place for a binding problem; the validator gets the same instance.
    private static readonly ConditionalWeakTable<RescueOptions, string> Problems = new();

    public static void AddRescueOptions(this IServiceCollection services)
    {
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<RescueOptions>, RescueOptionsValidator>());
        services.AddOptions<RescueOptions>()
            .Configure<IConfiguration>(static (options, configuration) => Bind(configuration.GetSection(Section), options))
            .ValidateOnStart();
    }

    /// <summary>Binds <paramref name="section"/> into <paramref name="options"/>, or records why its text cannot be bound.</summary>
    public static void Bind(IConfigurationSection section, RescueOptions options)
    {
        string? problem = CheckText(section);
        if (problem is null)
        {
            try
            {
                section.Bind(options);
            }
            catch (InvalidOperationException e)
            {
                // A conversion CheckText does not foresee; the binder's message names the key and the value.
                problem = e.Message;
            }
        }

        if (problem is not null)
        {
            Problems.AddOrUpdate(options, problem);
        }
    }

    /// <summary>Why the configuration's text could not be bound into <paramref name="options"/>, or null.</summary>
    public static string? BindingProblem(RescueOptions options) => Problems.TryGetValue(options, out string? problem) ? problem : null;

    /// <summary>The first value the binder would fail to convert, or a list written as one value; null when there is none.</summary>
    internal static string? CheckText(IConfigurationSection section) => RescueSettingsText.Check(section, Section);

    /// <summary>
    /// The settings given, by name: every key of <paramref name="section"/> with a value, and every property of
    /// <paramref name="options"/> that differs from its default (the <c>UseMptcpAnycastRescue</c> callback's). Empty:
    /// rescue is not configured at all.
    /// </summary>
    public static IReadOnlyList<string> SetKeys(RescueOptions options, IConfigurationSection? section)
    {
        // The options' names first, so that a key the command line wrote in another case is listed as the property is named.
        var set = new SortedSet<string>(StringComparer.OrdinalIgnoreCase);
        var defaults = new RescueOptions();
        void Add(bool differs, string name)
        {
            if (differs)
            {
                set.Add(name);
            }
        }

        Add(!string.IsNullOrWhiteSpace(options.Name), nameof(RescueOptions.Name));
        Add(!string.IsNullOrWhiteSpace(options.Interface), nameof(RescueOptions.Interface));
        Add(options.AnycastAddresses is { Count: > 0 }, nameof(RescueOptions.AnycastAddresses));
        Add(!string.IsNullOrWhiteSpace(options.UnicastIPv4), nameof(RescueOptions.UnicastIPv4));
        Add(!string.IsNullOrWhiteSpace(options.UnicastIPv6), nameof(RescueOptions.UnicastIPv6));
        Add(options.Peers is { Count: > 0 }, nameof(RescueOptions.Peers));
        Add(options.Port != defaults.Port, nameof(RescueOptions.Port));
        Add(options.LookupTimeout != defaults.LookupTimeout, nameof(RescueOptions.LookupTimeout));
        Add(options.LookupsPerSecond != defaults.LookupsPerSecond, nameof(RescueOptions.LookupsPerSecond));
        Add(options.OwnerIdleTimeout != defaults.OwnerIdleTimeout, nameof(RescueOptions.OwnerIdleTimeout));
        Add(options.MssIPv4 != defaults.MssIPv4, nameof(RescueOptions.MssIPv4));
        Add(options.MssIPv6 != defaults.MssIPv6, nameof(RescueOptions.MssIPv6));
        Add(!string.IsNullOrWhiteSpace(options.PinDirectory), nameof(RescueOptions.PinDirectory));
        Add(options.StatusDirectory != defaults.StatusDirectory, nameof(RescueOptions.StatusDirectory));
        foreach (IConfigurationSection child in section?.GetChildren() ?? [])
        {
            if (child.AsEnumerable().Any(static kv => !string.IsNullOrWhiteSpace(kv.Value)))
            {
                set.Add(child.Key);
            }
        }

        return [.. set];
    }

    /// <summary>The required settings <paramref name="options"/> lacks, by their full key.</summary>
    public static IReadOnlyList<string> MissingKeys(RescueOptions options)
    {
        var missing = new List<string>();
        if (string.IsNullOrWhiteSpace(options.Name))
        {
            missing.Add($"{Section}:Name");
        }

        if (string.IsNullOrWhiteSpace(options.Interface))
        {
            missing.Add($"{Section}:Interface");
        }

        if (options.AnycastAddresses is not { Count: > 0 })
        {
            missing.Add($"{Section}:AnycastAddresses");
        }

        if (string.IsNullOrWhiteSpace(options.UnicastIPv4) && string.IsNullOrWhiteSpace(options.UnicastIPv6))
        {
            missing.Add($"{Section}:UnicastIPv4 (or :UnicastIPv6)");
        }

        return missing;
    }
}
