using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace MptcpAnycast;

/// <summary>
/// Addresses as an operator writes them, read strictly: <see cref="IPAddress.TryParse(string, out IPAddress)"/> also
/// takes "10" as 0.0.0.10, "1.2.3" as 1.2.0.3, "0x7f.1" as 127.0.0.1, "192.0.2.010" as 192.0.2.8 and "[::1]:80" as ::1,
/// each of which would make a setting or a command act on an address nobody wrote.
/// </summary>
internal static class IPAddressText
{
    /// <summary>IPv4 only as four dotted decimals of at most three digits, without leading zeros; IPv6 without brackets, port or scope.</summary>
    public static bool TryParseStrict(string text, [NotNullWhen(true)] out IPAddress? address)
    {
        address = null;
        if (text.Length == 0 || text.Contains('[', StringComparison.Ordinal) || text.Contains('%', StringComparison.Ordinal))
        {
            return false;
        }

        if (text.Contains(':', StringComparison.Ordinal))
        {
            return IPAddress.TryParse(text, out address) && address.AddressFamily == AddressFamily.InterNetworkV6;
        }

        string[] parts = text.Split('.');
        // A leading zero would make IPAddress read the part as octal ("010" is 8).
        if (parts.Length != 4 || parts.Any(p => p.Length is 0 or > 3 || (p.Length > 1 && p[0] == '0') || !p.All(char.IsAsciiDigit)
            || int.Parse(p, CultureInfo.InvariantCulture) > 255))
        {
            return false;
        }

        return IPAddress.TryParse(text, out address);
    }
}
