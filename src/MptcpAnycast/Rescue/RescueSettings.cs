using System.Globalization;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;

namespace MptcpAnycast.Rescue;

/// <summary>A rescue setting that cannot work; the message names the setting, the value and what is expected.</summary>
public sealed class RescueConfigurationException(string message) : Exception(message);

/// <summary><see cref="RescueOptions"/> checked and parsed: what the agent runs with.</summary>
internal sealed record RescueSettings
{
    public required string Name { get; init; }
    public required string Interface { get; init; }
    public required int InterfaceIndex { get; init; }
    public required IReadOnlyList<IPAddress> Anycast { get; init; }
    public IPAddress? UnicastIPv4 { get; init; }
    public IPAddress? UnicastIPv6 { get; init; }
    public required IReadOnlyList<RescuePeer> Peers { get; init; }
    public required int Port { get; init; }
    public required TimeSpan LookupTimeout { get; init; }
    public required int LookupsPerSecond { get; init; }
    public required int MssIPv4 { get; init; }
    public required int MssIPv6 { get; init; }
    public string? PinDirectory { get; init; }
    public string? StatusDirectory { get; init; }

    /// <summary>How many anycast addresses, and how many peer addresses, the program's maps hold (<c>max_entries</c>).</summary>
    internal const int MaxAddresses = 256;

    /// <summary>Checks every setting; the first problem throws, naming it (<paramref name="prefix"/> is the section's path).</summary>
    /// <exception cref="RescueConfigurationException">A setting is missing or bad.</exception>
    public static RescueSettings From(RescueOptions options, string prefix = RescueOptions.SectionName)
    {
        ArgumentNullException.ThrowIfNull(options);
        string name = Required(options.Name, $"{prefix}:Name", "this POP's name");
        string ifname = Required(options.Interface, $"{prefix}:Interface", "the uplink interface");
        NetworkInterface nic = NetworkInterface.GetAllNetworkInterfaces().FirstOrDefault(n => n.Name == ifname)
            ?? throw new RescueConfigurationException($"{prefix}:Interface '{ifname}': no such interface in this network namespace");
        int ifindex = nic.GetIPProperties().GetIPv4Properties()?.Index ?? nic.GetIPProperties().GetIPv6Properties()?.Index
            ?? throw new RescueConfigurationException($"{prefix}:Interface '{ifname}' has no interface index");
        int mtu = nic.GetIPProperties().GetIPv4Properties()?.Mtu ?? 1500;

        if (options.AnycastAddresses.Count == 0)
        {
            throw new RescueConfigurationException($"{prefix}:AnycastAddresses is empty; list the anycast addresses whose connections are rescued");
        }

        var anycast = options.AnycastAddresses.Select((a, i) => Address(a, $"{prefix}:AnycastAddresses:{i}", null)!).Distinct().ToList();
        if (anycast.Count > MaxAddresses)
        {
            throw new RescueConfigurationException(
                $"{prefix}:AnycastAddresses lists {anycast.Count} addresses; the rescue program holds at most {MaxAddresses}");
        }

        IPAddress? unicast4 = Address(options.UnicastIPv4, $"{prefix}:UnicastIPv4", AddressFamily.InterNetwork);
        IPAddress? unicast6 = Address(options.UnicastIPv6, $"{prefix}:UnicastIPv6", AddressFamily.InterNetworkV6);
        if (unicast4 is null && unicast6 is null)
        {
            throw new RescueConfigurationException($"{prefix}:UnicastIPv4 and {prefix}:UnicastIPv6 are both empty; set this POP's own unicast address");
        }

        var peers = new List<RescuePeer>();
        for (int i = 0; i < options.Peers.Count; i++)
        {
            RescuePeerOptions peer = options.Peers[i];
            string at = $"{prefix}:Peers:{i}";
            string peerName = Required(peer.Name, $"{at}:Name", "the peer's name");
            IPAddress? peer4 = Address(peer.UnicastIPv4, $"{at}:UnicastIPv4", AddressFamily.InterNetwork);
            IPAddress? peer6 = Address(peer.UnicastIPv6, $"{at}:UnicastIPv6", AddressFamily.InterNetworkV6);
            if (peer4 is null && peer6 is null)
            {
                throw new RescueConfigurationException($"{at} ('{peerName}') has neither UnicastIPv4 nor UnicastIPv6");
            }

            string keyText = Required(peer.Key, $"{at}:Key", "the key shared with this peer (base64)");
            byte[] key;
            try
            {
                key = Convert.FromBase64String(keyText);
            }
            catch (FormatException)
            {
                throw new RescueConfigurationException($"{at}:Key is not base64 (make one with: openssl rand -base64 32)");
            }

            if (key.Length < 16)
            {
                throw new RescueConfigurationException($"{at}:Key has {key.Length} bytes; at least 16 are needed (openssl rand -base64 32)");
            }

            peers.Add(new RescuePeer(peerName, peer4, peer6, key));
        }

        int peerAddresses = peers.Sum(p => (p.UnicastIPv4 is null ? 0 : 1) + (p.UnicastIPv6 is null ? 0 : 1));
        if (peerAddresses > MaxAddresses)
        {
            throw new RescueConfigurationException(
                $"{prefix}:Peers has {peers.Count} peers with {peerAddresses} unicast addresses; the rescue program holds at most {MaxAddresses}");
        }

        if (options.Port is < 1 or > 65535)
        {
            throw new RescueConfigurationException($"{prefix}:Port {options.Port.ToString(CultureInfo.InvariantCulture)} is not a UDP port (1-65535)");
        }

        if (options.LookupTimeout < TimeSpan.FromMilliseconds(1) || options.LookupTimeout > TimeSpan.FromSeconds(10))
        {
            throw new RescueConfigurationException(
                $"{prefix}:LookupTimeout '{options.LookupTimeout}' must be between 00:00:00.001 and 00:00:10 (format hh:mm:ss.fff)");
        }

        if (options.LookupsPerSecond is < 1 or > 1_000_000)
        {
            throw new RescueConfigurationException($"{prefix}:LookupsPerSecond {options.LookupsPerSecond} must be between 1 and 1000000");
        }

        int mss4 = Mss(options.MssIPv4, mtu - 60, $"{prefix}:MssIPv4");
        int mss6 = Mss(options.MssIPv6, mtu - 100, $"{prefix}:MssIPv6");
        return new RescueSettings
        {
            Name = name,
            Interface = ifname,
            InterfaceIndex = ifindex,
            Anycast = anycast,
            UnicastIPv4 = unicast4,
            UnicastIPv6 = unicast6,
            Peers = peers,
            Port = options.Port,
            LookupTimeout = options.LookupTimeout,
            LookupsPerSecond = options.LookupsPerSecond,
            MssIPv4 = mss4,
            MssIPv6 = mss6,
            PinDirectory = string.IsNullOrWhiteSpace(options.PinDirectory) ? null : options.PinDirectory,
            StatusDirectory = string.IsNullOrWhiteSpace(options.StatusDirectory) ? null : options.StatusDirectory,
        };
    }

    private static string Required(string? value, string setting, string what) =>
        string.IsNullOrWhiteSpace(value) ? throw new RescueConfigurationException($"{setting} is empty; set {what}") : value.Trim();

    private static IPAddress? Address(string? text, string setting, AddressFamily? family)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return family is null ? throw new RescueConfigurationException($"{setting} is empty; expected an IP address") : null;
        }

        if (!IPAddress.TryParse(text.Trim(), out IPAddress? address) || text.Contains('/', StringComparison.Ordinal))
        {
            throw new RescueConfigurationException($"{setting} '{text}' is not an IP address");
        }

        address = address.Unmapped();
        if (family is AddressFamily expected && address.AddressFamily != expected)
        {
            throw new RescueConfigurationException(
                $"{setting} '{text}' is not an {(expected == AddressFamily.InterNetwork ? "IPv4" : "IPv6")} address");
        }

        return address;
    }

    private static int Mss(int configured, int fromMtu, string setting)
    {
        if (configured == 0)
        {
            return Math.Max(536, fromMtu);
        }

        return configured is < 536 or > 65495
            ? throw new RescueConfigurationException($"{setting} {configured} must be between 536 and 65495, or 0 for the interface's MTU less the tunnel header")
            : configured;
    }
}
