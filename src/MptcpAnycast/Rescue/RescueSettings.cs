using System.Globalization;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using MptcpAnycast.Rescue.Peers;

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
    public required TimeSpan OwnerIdleTimeout { get; init; }
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
        // The name goes into the status file's and the pinned map's paths as well as into every lookup message, so it
        // is checked before anything uses it.
        string name = PopName(Required(options.Name, $"{prefix}:Name", "this POP's name"), $"{prefix}:Name");
        string ifname = Required(options.Interface, $"{prefix}:Interface", "the uplink interface");
        NetworkInterface nic = NetworkInterface.GetAllNetworkInterfaces().FirstOrDefault(n => n.Name == ifname)
            ?? throw new RescueConfigurationException($"{prefix}:Interface '{ifname}': no such interface in this network namespace");
        int ifindex = nic.GetIPProperties().GetIPv4Properties()?.Index ?? nic.GetIPProperties().GetIPv6Properties()?.Index
            ?? throw new RescueConfigurationException($"{prefix}:Interface '{ifname}' has no interface index");
        int mtu = nic.GetIPProperties().GetIPv4Properties()?.Mtu ?? 1500;

        IList<string> anycastTexts = options.AnycastAddresses ?? [];
        if (anycastTexts.Count == 0)
        {
            throw new RescueConfigurationException($"{prefix}:AnycastAddresses is empty; list the anycast addresses whose connections are rescued");
        }

        // Every address configured so far, by the setting that holds it, so that a clash names both settings.
        var anycastKeys = new Dictionary<IPAddress, string>();
        var anycast = new List<IPAddress>();
        for (int i = 0; i < anycastTexts.Count; i++)
        {
            IPAddress address = Address(anycastTexts[i], $"{prefix}:AnycastAddresses:{i}", null)!;
            if (anycastKeys.TryAdd(address, $"{prefix}:AnycastAddresses:{i}"))
            {
                anycast.Add(address);
            }
        }

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

        var unicastKeys = new Dictionary<IPAddress, string>();
        foreach ((IPAddress? address, string setting, string? text) in new[]
        {
            (unicast4, $"{prefix}:UnicastIPv4", options.UnicastIPv4),
            (unicast6, $"{prefix}:UnicastIPv6", options.UnicastIPv6),
        })
        {
            if (address is null)
            {
                continue;
            }

            if (anycastKeys.TryGetValue(address, out string? other))
            {
                throw Clash(setting, text, other,
                    "this POP's unicast address must be its own, not an anycast one: peers tunnel segments and send lookups to it");
            }

            unicastKeys.Add(address, setting);
        }

        IList<RescuePeerOptions> peerOptions = options.Peers ?? [];
        // Names that differ only in case would read as one POP in the status, logs and metrics.
        var peerNames = new Dictionary<string, (string Setting, string Spelled)>(StringComparer.OrdinalIgnoreCase);
        var peerKeys = new Dictionary<IPAddress, string>();
        var peers = new List<RescuePeer>();
        for (int i = 0; i < peerOptions.Count; i++)
        {
            string at = $"{prefix}:Peers:{i}";
            RescuePeerOptions? peer = peerOptions[i]
                ?? throw new RescueConfigurationException($"{at} is empty (null); give the peer's Name, UnicastIPv4 and/or UnicastIPv6, and Key");
            string peerName = PopName(Required(peer.Name, $"{at}:Name", "the peer's name"), $"{at}:Name");
            if (peerName.Equals(name, StringComparison.OrdinalIgnoreCase))
            {
                throw new RescueConfigurationException(
                    $"{at}:Name '{peerName}' is this POP's own name ({prefix}:Name{(peerName == name ? "" : $" '{name}': names that differ only in case are one name")}); a peer is another POP");
            }

            if (!peerNames.TryAdd(peerName, ($"{at}:Name", peerName)))
            {
                (string setting, string spelled) = peerNames[peerName];
                throw new RescueConfigurationException(
                    $"{at}:Name '{peerName}' is also {setting}{(spelled == peerName ? "" : $" ('{spelled}': names that differ only in case are one name)")}; list each peer once");
            }

            IPAddress? peer4 = Address(peer.UnicastIPv4, $"{at}:UnicastIPv4", AddressFamily.InterNetwork);
            IPAddress? peer6 = Address(peer.UnicastIPv6, $"{at}:UnicastIPv6", AddressFamily.InterNetworkV6);
            if (peer4 is null && peer6 is null)
            {
                throw new RescueConfigurationException($"{at} ('{peerName}') has neither UnicastIPv4 nor UnicastIPv6");
            }

            // Lookups and tunnels stay within one family (no 4-in-6 or 6-in-4), so a peer needs one this POP has too.
            if (!(unicast4 is not null && peer4 is not null) && !(unicast6 is not null && peer6 is not null))
            {
                string has = peer4 is not null ? "UnicastIPv4" : "UnicastIPv6";
                string lacks = unicast4 is null ? "UnicastIPv4" : "UnicastIPv6";
                throw new RescueConfigurationException(
                    $"{at} ('{peerName}') has only {at}:{has} and this POP has no {prefix}:{lacks}: the two POPs share no address family " +
                    "to send lookups and tunnel segments over");
            }

            foreach ((IPAddress? address, string setting, string? text) in new[]
            {
                (peer4, $"{at}:UnicastIPv4", peer.UnicastIPv4),
                (peer6, $"{at}:UnicastIPv6", peer.UnicastIPv6),
            })
            {
                if (address is null)
                {
                    continue;
                }

                if (unicastKeys.TryGetValue(address, out string? own))
                {
                    throw Clash(setting, text, own, "a peer's address cannot be this POP's own");
                }

                if (anycastKeys.TryGetValue(address, out string? shared))
                {
                    throw Clash(setting, text, shared, "a peer is tunnelled to and asked at its own unicast address, not at an anycast one");
                }

                if (!peerKeys.TryAdd(address, setting))
                {
                    throw Clash(setting, text, peerKeys[address], "each peer needs an address of its own: lookups are matched to peers by it");
                }
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

            // A placeholder left in a template (AAAA...): every POP that copied it would share a key anyone can guess.
            if (key.AsSpan().IndexOfAnyExcept(key[0]) < 0)
            {
                throw new RescueConfigurationException(
                    $"{at}:Key is {key.Length} bytes of 0x{key[0]:x2} only, which is no secret; make one with: openssl rand -base64 32");
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

        if (options.OwnerIdleTimeout < TimeSpan.FromSeconds(1) || options.OwnerIdleTimeout > TimeSpan.FromDays(1))
        {
            throw new RescueConfigurationException(
                $"{prefix}:OwnerIdleTimeout '{options.OwnerIdleTimeout}' must be between 00:00:01 and 1.00:00:00 (format d.hh:mm:ss)");
        }

        int mss4 = Mss(options.MssIPv4, mtu, 60, $"{prefix}:MssIPv4");
        int mss6 = Mss(options.MssIPv6, mtu, 100, $"{prefix}:MssIPv6");
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
            OwnerIdleTimeout = options.OwnerIdleTimeout,
            MssIPv4 = mss4,
            MssIPv6 = mss6,
            PinDirectory = PinDirectoryOf(options.PinDirectory, name, prefix),
            StatusDirectory = StatusDirectoryOf(options.StatusDirectory, prefix),
        };
    }

    private static string Required(string? value, string setting, string what) =>
        string.IsNullOrWhiteSpace(value) ? throw new RescueConfigurationException($"{setting} is empty; set {what}") : value.Trim();

    /// <summary>The pin directory: an existing directory on a bpffs mount, for an agent whose name bpffs takes in a pin's name.</summary>
    private static string? PinDirectoryOf(string? text, string name, string prefix)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return null;
        }

        string directory = text.Trim();
        string setting = $"{prefix}:PinDirectory";
        if (!Path.IsPathFullyQualified(directory))
        {
            throw new RescueConfigurationException($"{setting} '{directory}' is not an absolute path; give the directory of a bpffs mount, such as /sys/fs/bpf");
        }

        if (File.Exists(directory))
        {
            throw new RescueConfigurationException($"{setting} '{directory}' is a file, not a directory; give the directory of a bpffs mount, such as /sys/fs/bpf");
        }

        if (!Directory.Exists(directory))
        {
            throw new RescueConfigurationException($"{setting} '{directory}' does not exist; mount a bpffs there (mount -t bpf bpf {directory}) or leave it empty");
        }

        if (name.Contains('.', StringComparison.Ordinal))
        {
            throw new RescueConfigurationException(
                $"{prefix}:Name '{name}' has a '.', which bpffs refuses in the names of pins ({setting} is set); choose a name without '.'");
        }

        // A link into a bpffs mount serves as well as the mount: the kernel follows it when it pins.
        string? real = FileKinds.RealPath(directory);
        string? fileSystem = Interop.ProcFiles.FileSystemOf(real ?? directory);
        if (fileSystem is not null and not "bpf")
        {
            throw new RescueConfigurationException(
                $"{setting} '{directory}'{LeadsTo(directory, real)} is on a {fileSystem} file system, not bpffs; mount one there (mount -t bpf bpf {directory}) or leave it empty");
        }

        return directory;
    }

    /// <summary>
    /// The status directory: an absolute path that is a directory or can become one (the agent creates it), on a file
    /// system that keeps files. A bad one would otherwise surface only as a failed write after the program is attached.
    /// </summary>
    private static string? StatusDirectoryOf(string? text, string prefix)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return null;
        }

        string directory = text.Trim();
        string setting = $"{prefix}:StatusDirectory";
        if (directory.Contains('\0', StringComparison.Ordinal))
        {
            throw new RescueConfigurationException($"{setting} holds a NUL character, which no path can; give a directory such as {RescueOptions.DefaultStatusDirectory}");
        }

        if (!Path.IsPathFullyQualified(directory))
        {
            throw new RescueConfigurationException(
                $"{setting} '{directory}' is not an absolute path; give a directory such as {RescueOptions.DefaultStatusDirectory}, or leave it empty for no status file");
        }

        // The agent creates the parts that do not exist yet. Those that do must all be directories (one that is a
        // file fails the agent's first write), and the file system is the one the links lead to, not the text's.
        string full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory));
        string existing = full;
        while (!Path.Exists(existing) && Path.GetDirectoryName(existing) is string parent)
        {
            existing = parent;
        }

        if (!Directory.Exists(existing))
        {
            // A link that leads nowhere counts as there, but is no directory, and mkdir does not follow it.
            if (new FileInfo(existing).LinkTarget is string target && FileKinds.RealPath(existing) is null)
            {
                throw new RescueConfigurationException(existing == full
                    ? $"{setting} '{directory}' is a symbolic link to '{target}' that leads nowhere"
                    : $"{setting} '{directory}' lies under '{existing}', a symbolic link to '{target}' that leads nowhere");
            }

            throw new RescueConfigurationException(existing == full
                ? $"{setting} '{directory}' is a file, not a directory"
                : $"{setting} '{directory}' lies under '{existing}', which is a file, not a directory");
        }

        string? real = FileKinds.RealPath(existing) is string resolved
            ? Path.GetFullPath(Path.Join(resolved, Path.GetRelativePath(existing, full)))
            : null;
        string? fileSystem = Interop.ProcFiles.FileSystemOf(real ?? full);
        if (fileSystem is "proc" or "sysfs" or "bpf" or "cgroup" or "cgroup2" or "debugfs" or "tracefs" or "securityfs")
        {
            throw new RescueConfigurationException(
                $"{setting} '{directory}'{LeadsTo(full, real)} is on a {fileSystem} file system, which does not keep ordinary files; give a directory such as {RescueOptions.DefaultStatusDirectory}");
        }

        return directory;
    }

    /// <summary>Where symbolic links take a path, said when they take it somewhere else.</summary>
    private static string LeadsTo(string path, string? real) =>
        real is null || real == Path.TrimEndingDirectorySeparator(path) ? "" : $" (its links lead to '{real}')";

    private static string PopName(string name, string setting) =>
        PeerMessageCodec.IsValidName(name)
            ? name
            : throw new RescueConfigurationException($"{setting} '{name}' is not a POP name: 1 to 32 ASCII letters, digits, '-', '.' or '_'");

    private static RescueConfigurationException Clash(string setting, string? text, string otherSetting, string why) =>
        new($"{setting} '{text?.Trim()}' is also {otherSetting}: {why}");

    private static IPAddress? Address(string? text, string setting, AddressFamily? family)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return family is null ? throw new RescueConfigurationException($"{setting} is empty; expected an IP address") : null;
        }

        if (!IPAddressText.TryParseStrict(text.Trim(), out IPAddress? address) || text.Contains('/', StringComparison.Ordinal))
        {
            throw new RescueConfigurationException(
                $"{setting} '{text}' is not an IP address (IPv4 as four decimal numbers, IPv6 without brackets, port, prefix length or scope)");
        }

        // TryParseStrict admits a leading zero ("192.0.2.010"), which IPAddress reads as octal (192.0.2.8).
        if (address.AddressFamily == AddressFamily.InterNetwork && address.ToString() != text.Trim())
        {
            throw new RescueConfigurationException(
                $"{setting} '{text}' is not an IP address (IPv4 as four decimal numbers without leading zeros, IPv6 without brackets, port, prefix length or scope)");
        }

        address = address.Unmapped();
        if (family is AddressFamily expected && address.AddressFamily != expected)
        {
            throw new RescueConfigurationException(
                $"{setting} '{text}' is not an {(expected == AddressFamily.InterNetwork ? "IPv4" : "IPv6")} address");
        }

        if (NotUnicast(address) is string what)
        {
            throw new RescueConfigurationException($"{setting} '{text}' is {what}; expected a unicast address that other POPs and clients can reach");
        }

        return address;
    }

    /// <summary>
    /// What makes <paramref name="address"/> unusable as an anycast, own or peer address, or null. Loopback is refused
    /// too: no other POP reaches it and no client traffic arrives at it on the uplink (the tests that need loopback
    /// drive the peer channel and the program directly, not through these settings).
    /// </summary>
    private static string? NotUnicast(IPAddress address)
    {
        if (address.AddressFamily == AddressFamily.InterNetwork)
        {
            Span<byte> b = stackalloc byte[4];
            address.TryWriteBytes(b, out _);
            return b[0] == 0 ? "unspecified (0.0.0.0/8 is no host's address)"
                : b[0] == 127 ? "a loopback address"
                : b[0] is >= 224 and < 240 ? "a multicast address"
                : address.Equals(IPAddress.Broadcast) ? "the broadcast address"
                : b[0] >= 240 ? "a reserved address (240.0.0.0/4 is routed nowhere)"
                : address.OnOneLinkOnly();
        }

        return address.Equals(IPAddress.IPv6Any) ? "unspecified"
            : address.Equals(IPAddress.IPv6Loopback) ? "a loopback address"
            : address.IsIPv6Multicast ? "a multicast address"
            : address.OnOneLinkOnly();
    }

    /// <summary>
    /// The MSS to advertise: <paramref name="configured"/>, or when 0 the largest that fits <paramref name="mtu"/> once
    /// tunnelled (the headers: the inner IP and TCP headers and the outer IP header). A configured one may be larger:
    /// the tunnel follows the route to the owner, which may be a link with a larger MTU than the uplink's.
    /// </summary>
    private static int Mss(int configured, int mtu, int headers, string setting)
    {
        if (configured == 0)
        {
            return Math.Max(536, mtu - headers);
        }

        return configured is < 536 or > 65495
            ? throw new RescueConfigurationException($"{setting} {configured} must be between 536 and 65495, or 0 for the interface's MTU less the tunnel header")
            : configured;
    }
}
