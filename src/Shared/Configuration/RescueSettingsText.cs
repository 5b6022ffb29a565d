using System.Globalization;
using Microsoft.Extensions.Configuration;
using MptcpAnycast.Rescue;

namespace MptcpAnycast;

/// <summary>
/// The rescue settings' text as the configuration holds it, checked before it is bound: a key that is not a setting,
/// a list or an object where one value belongs and one value where a list belongs (all of which the binder drops
/// without a word), then the first value the binder would fail to convert (<c>Port=abc</c>). Compiled into the
/// transport, which checks an app's configuration with it, and the tool, which checks <c>rescue run --config</c>'s
/// file, so that a bad value reads the same in both.
/// </summary>
internal static class RescueSettingsText
{
    private static readonly ConfigurationShape Shape = ConfigurationShape.Object("rescue setting",
        (nameof(RescueOptions.Name), ConfigurationShape.Value),
        (nameof(RescueOptions.Interface), ConfigurationShape.Value),
        (nameof(RescueOptions.AnycastAddresses), ConfigurationShape.List(ConfigurationShape.Value, "=192.0.2.100")),
        (nameof(RescueOptions.UnicastIPv4), ConfigurationShape.Value),
        (nameof(RescueOptions.UnicastIPv6), ConfigurationShape.Value),
        (nameof(RescueOptions.Peers), ConfigurationShape.List(
            ConfigurationShape.Object("peer setting",
                (nameof(RescuePeerOptions.Name), ConfigurationShape.Value),
                (nameof(RescuePeerOptions.UnicastIPv4), ConfigurationShape.Value),
                (nameof(RescuePeerOptions.UnicastIPv6), ConfigurationShape.Value),
                (nameof(RescuePeerOptions.Key), ConfigurationShape.Value)),
            ":Name=pop-b")),
        (nameof(RescueOptions.Port), ConfigurationShape.Value),
        (nameof(RescueOptions.LookupTimeout), ConfigurationShape.Value),
        (nameof(RescueOptions.LookupsPerSecond), ConfigurationShape.Value),
        (nameof(RescueOptions.OwnerIdleTimeout), ConfigurationShape.Value),
        (nameof(RescueOptions.MssIPv4), ConfigurationShape.Value),
        (nameof(RescueOptions.MssIPv6), ConfigurationShape.Value),
        (nameof(RescueOptions.PinDirectory), ConfigurationShape.Value),
        (nameof(RescueOptions.StatusDirectory), ConfigurationShape.Value));

    /// <summary>The problem, named with <paramref name="prefix"/> (the section's path), or null.</summary>
    /// <param name="section">The rescue settings: the section, or the whole of a file that holds only them.</param>
    /// <param name="prefix">The section's path, e.g. <c>MptcpAnycast:Rescue</c>.</param>
    public static string? Check(IConfiguration section, string prefix)
    {
        CultureInfo c = CultureInfo.InvariantCulture;
        const string WholeNumber = "is not a whole number (536-65495, or 0 for the interface's MTU less the tunnel header)";
        return Shape.Check(section, prefix)
            ?? Convertible(section, prefix, nameof(RescueOptions.Port), v => int.TryParse(v, NumberStyles.Integer, c, out _), "is not a UDP port (1-65535)")
            ?? Convertible(section, prefix, nameof(RescueOptions.LookupsPerSecond), v => int.TryParse(v, NumberStyles.Integer, c, out _),
                "is not a whole number (1-1000000)")
            ?? Convertible(section, prefix, nameof(RescueOptions.MssIPv4), v => int.TryParse(v, NumberStyles.Integer, c, out _), WholeNumber)
            ?? Convertible(section, prefix, nameof(RescueOptions.MssIPv6), v => int.TryParse(v, NumberStyles.Integer, c, out _), WholeNumber)
            ?? TimeSpanText(section, prefix, nameof(RescueOptions.LookupTimeout), "hh:mm:ss.fff, e.g. 00:00:00.250 for 250 ms")
            ?? TimeSpanText(section, prefix, nameof(RescueOptions.OwnerIdleTimeout), "hh:mm:ss, e.g. 00:10:00 for 10 minutes");
    }

    /// <summary>
    /// A time span's text: one the binder reads, and not a bare number, which it reads as a count of days
    /// (<c>OwnerIdleTimeout: 1</c> would be a day, and in range), rarely what was meant.
    /// </summary>
    private static string? TimeSpanText(IConfiguration section, string prefix, string key, string format)
    {
        string? value = section[key];
        if (string.IsNullOrEmpty(value))
        {
            return null;
        }

        if (!TimeSpan.TryParse(value, CultureInfo.InvariantCulture, out _))
        {
            return $"{prefix}:{key} {ConfigurationShape.Quote(value)} is not a time span; write it as {format}";
        }

        return value.Contains(':', StringComparison.Ordinal)
            ? null
            : $"{prefix}:{key} {ConfigurationShape.Quote(value)} is a bare number, which a time span reads as days; write it as {format}";
    }

    private static string? Convertible(IConfiguration section, string prefix, string key, Func<string, bool> converts, string problem)
    {
        string? value = section[key];
        return string.IsNullOrEmpty(value) || converts(value) ? null : $"{prefix}:{key} {ConfigurationShape.Quote(value)} {problem}";
    }
}
