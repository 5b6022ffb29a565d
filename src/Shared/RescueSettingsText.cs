using System.Globalization;
using MptcpAnycast.Rescue;

namespace MptcpAnycast;

/// <summary>
/// The rescue settings' text as the configuration holds it, checked before it is bound: the first value the binder
/// would fail to convert (<c>Port=abc</c>), or a list written as one value (which the binder drops without a word).
/// Compiled into the transport, which checks an app's configuration with it, and the tool, which checks
/// <c>rescue run --config</c>'s file, so that a bad value reads the same in both.
/// </summary>
internal static class RescueSettingsText
{
    /// <summary>The problem, named with <paramref name="prefix"/> (the section's path), or null.</summary>
    /// <param name="valueOf">The text of a key of the section, or null.</param>
    /// <param name="prefix">The section's path, e.g. <c>MptcpAnycast:Rescue</c>.</param>
    public static string? Check(Func<string, string?> valueOf, string prefix)
    {
        CultureInfo c = CultureInfo.InvariantCulture;
        return Convertible(valueOf, prefix, nameof(RescueOptions.Port), v => int.TryParse(v, NumberStyles.Integer, c, out _), "is not a UDP port (1-65535)")
            ?? Convertible(valueOf, prefix, nameof(RescueOptions.LookupsPerSecond), v => int.TryParse(v, NumberStyles.Integer, c, out _),
                "is not a whole number (1-1000000)")
            ?? Convertible(valueOf, prefix, nameof(RescueOptions.MssIPv4), v => int.TryParse(v, NumberStyles.Integer, c, out _),
                "is not a whole number (536-65495, or 0 for the interface's MTU less the tunnel header)")
            ?? Convertible(valueOf, prefix, nameof(RescueOptions.MssIPv6), v => int.TryParse(v, NumberStyles.Integer, c, out _),
                "is not a whole number (536-65495, or 0 for the interface's MTU less the tunnel header)")
            ?? Convertible(valueOf, prefix, nameof(RescueOptions.LookupTimeout), v => TimeSpan.TryParse(v, c, out _),
                "is not a time span; write it as hh:mm:ss.fff, e.g. 00:00:00.250 for 250 ms")
            ?? List(valueOf, prefix, nameof(RescueOptions.AnycastAddresses), "AnycastAddresses:0=192.0.2.100")
            ?? List(valueOf, prefix, nameof(RescueOptions.Peers), "Peers:0:Name=pop-b");
    }

    private static string? Convertible(Func<string, string?> valueOf, string prefix, string key, Func<string, bool> converts, string problem)
    {
        string? value = valueOf(key);
        return string.IsNullOrEmpty(value) || converts(value) ? null : $"{prefix}:{key} '{value}' {problem}";
    }

    private static string? List(Func<string, string?> valueOf, string prefix, string key, string entry)
    {
        string? value = valueOf(key);
        return string.IsNullOrEmpty(value) ? null
            : $"{prefix}:{key} '{value}' is a list: write {prefix}:{entry} (command line --{prefix}:{entry}, environment "
                + $"{prefix.Replace(":", "__", StringComparison.Ordinal)}__{entry.Replace(":", "__", StringComparison.Ordinal)}), and :1 for a second entry";
    }
}
