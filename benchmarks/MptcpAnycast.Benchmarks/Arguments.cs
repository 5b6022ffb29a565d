using System.Globalization;
using System.Net;

namespace MptcpAnycast.Benchmarks;

/// <summary>Checks of the benchmark commands' own arguments; a bad one throws, naming the command, the option and the value.</summary>
internal static class Arguments
{
    public static int Int(string command, string name, string value, int min, int max) =>
        int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n >= min && n <= max
            ? n
            : throw new UsageException($"{command}: {name} must be a whole number from {min} to {max}, got '{value}'");

    public static IPAddress Address(string command, string name, string value) =>
        // TryParse also reads "1" and "1.2" as IPv4 addresses; a dotted quad must read back as written.
        IPAddress.TryParse(value, out IPAddress? address) && (value.Contains(':', StringComparison.Ordinal) || address.ToString() == value)
            ? address
            : throw new UsageException($"{command}: {name} must be an IP address, got '{value}'");
}

/// <summary>
/// A benchmark command's arguments are wrong: the entry point prints the message alone and exits 2. Any other
/// exception, an <see cref="ArgumentException"/> from the code measured included, keeps its stack trace.
/// </summary>
internal sealed class UsageException(string message) : Exception(message);
