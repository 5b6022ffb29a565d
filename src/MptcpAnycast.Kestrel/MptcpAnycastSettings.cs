using System.Globalization;
using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Kestrel.Announcing;

namespace MptcpAnycast.Kestrel;

/// <summary>Validated, parsed <see cref="MptcpAnycastOptions"/>. Built once at start-up; every error names the setting and value.</summary>
internal sealed class MptcpAnycastSettings
{
    public required AnnouncementMode Mode { get; init; }
    public required IReadOnlyList<IPAddress> Anycast { get; init; }
    public required IReadOnlyList<IPEndPoint> Unicast { get; init; }
    public required AnnounceOn AnnounceOn { get; init; }
    public required AfterJoinPolicy AfterJoin { get; init; }
    public required TimeSpan JoinTimeout { get; init; }

    /// <summary>How long after accept a connection is announced (Userspace mode, AnnounceOn = Accept); zero: at once.</summary>
    public TimeSpan AnnounceDelay { get; init; }
    public required bool ConfigureHost { get; init; }
    public int AnnouncementsPerClientPerMinute { get; init; }
    public int EventSocketReceiveBufferSize { get; init; } = DefaultEventSocketReceiveBufferSize;

    /// <summary>The range of <see cref="MptcpAnycastOptions.EventSocketReceiveBufferSize"/>: 4 KiB to 256 MiB.</summary>
    public const int MinEventSocketReceiveBufferSize = 4096, MaxEventSocketReceiveBufferSize = 256 * 1024 * 1024;

    public static readonly TimeSpan MaxAnnounceDelay = TimeSpan.FromMinutes(10);

    /// <summary>4 MiB when unset: rides out about a second of stalled reading at thousands of connections per second (benchmarks/README.md, event lag).</summary>
    public const int DefaultEventSocketReceiveBufferSize = 4 * 1024 * 1024;

    /// <summary>How configuration writes a <see cref="TimeSpan"/>; every message about one says it.</summary>
    internal const string TimeSpanFormat = "[d.]hh:mm:ss[.fffffff]";

    /// <summary>A bare number binds as a count of days, which is rarely what was meant: the message says so.</summary>
    internal static string TimeSpanProblem(string range, string example, string meaning) =>
        $"{range}; write it as {TimeSpanFormat}, e.g. {example} for {meaning} (a bare number such as 5 is read as 5 days)";

    /// <summary>Whether <see cref="MptcpAnycastOptions.UnicastAddresses"/> says <c>auto</c>.</summary>
    public bool UnicastFromAuto { get; init; }

    /// <summary>The entries of <see cref="Unicast"/> that <c>auto</c> chose from this host's addresses.</summary>
    public IReadOnlyList<IPEndPoint> ChosenByAuto { get; init; } = [];

    public UnicastAnnouncementPolicy CreatePolicy() => new(Anycast, Unicast);

    /// <param name="options">The options as bound.</param>
    /// <param name="hostAddresses">The addresses this host holds (injectable for tests); null reads the interfaces.</param>
    public static MptcpAnycastSettings Validate(MptcpAnycastOptions options, IReadOnlyCollection<IPAddress>? hostAddresses = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        CheckEnum(nameof(options.Mode), options.Mode);
        CheckEnum(nameof(options.AnnounceOn), options.AnnounceOn);
        CheckEnum(nameof(options.AfterJoin), options.AfterJoin);

        if (options.JoinTimeout <= TimeSpan.Zero || options.JoinTimeout > TimeSpan.FromHours(1))
        {
            throw new MptcpAnycastConfigurationException(nameof(options.JoinTimeout), options.JoinTimeout.ToString("c", CultureInfo.InvariantCulture),
                TimeSpanProblem("must be more than 0 and at most 1 hour", "00:00:05", "5 seconds"));
        }

        if (options.AnnounceDelay < TimeSpan.Zero || options.AnnounceDelay > MaxAnnounceDelay)
        {
            throw new MptcpAnycastConfigurationException(nameof(options.AnnounceDelay), options.AnnounceDelay.ToString("c", CultureInfo.InvariantCulture),
                TimeSpanProblem("must be from 0 (announce at accept) to 10 minutes", "00:00:00.200", "200 ms"));
        }

        if (options.AnnounceDelay > TimeSpan.Zero && (options.Mode == AnnouncementMode.Kernel || options.AnnounceOn != AnnounceOn.Accept))
        {
            throw new MptcpAnycastConfigurationException(nameof(options.AnnounceDelay), options.AnnounceDelay.ToString("c", CultureInfo.InvariantCulture),
                options.Mode == AnnouncementMode.Kernel
                    ? "needs Userspace mode: the kernel path manager announces as soon as a connection is established"
                    : "applies to AnnounceOn = Accept; with Demand the application decides when to announce");
        }

        if (options.AnnouncementsPerClientPerMinute is < 0 or > 1_000_000)
        {
            throw new MptcpAnycastConfigurationException(nameof(options.AnnouncementsPerClientPerMinute),
                options.AnnouncementsPerClientPerMinute.ToString(CultureInfo.InvariantCulture), "must be from 0 (no limit) to 1000000");
        }

        // Mode = Auto may still resolve to Kernel at run time; the transport warns then (events 26 and 27).
        if (options.Mode == AnnouncementMode.Kernel && options.AnnounceOn == AnnounceOn.Demand)
        {
            throw new MptcpAnycastConfigurationException(nameof(options.AnnounceOn), nameof(AnnounceOn.Demand),
                "needs Mode = Userspace; with Mode = Kernel the kernel path manager announces on every connection, so the application cannot choose which");
        }

        if (options.Mode == AnnouncementMode.Kernel && options.AnnouncementsPerClientPerMinute > 0)
        {
            throw new MptcpAnycastConfigurationException(nameof(options.AnnouncementsPerClientPerMinute),
                options.AnnouncementsPerClientPerMinute.ToString(CultureInfo.InvariantCulture),
                "needs Mode = Userspace; with Mode = Kernel the kernel path manager announces on every connection and no limit applies (0 for no limit)");
        }

        if (options.EventSocketReceiveBufferSize is int bufferSize
            && bufferSize is < MinEventSocketReceiveBufferSize or > MaxEventSocketReceiveBufferSize)
        {
            throw new MptcpAnycastConfigurationException(nameof(options.EventSocketReceiveBufferSize),
                bufferSize.ToString(CultureInfo.InvariantCulture),
                $"must be from {MinEventSocketReceiveBufferSize} (4 KiB) to {MaxEventSocketReceiveBufferSize} (256 MiB) bytes, or unset for the default (4 MiB)");
        }

        var anycast = new List<IPAddress>();
        var anycastTexts = new List<string?>();
        foreach (string? text in options.AnycastAddresses ?? [])
        {
            string trimmed = (text ?? "").Trim();
            if (!IPAddressText.TryParseStrict(trimmed, out IPAddress? parsed))
            {
                throw new MptcpAnycastConfigurationException(nameof(options.AnycastAddresses), text, "not an IP address (write 192.0.2.1 or 2001:db8::1, no port)");
            }

            IPAddress address = parsed.Unmapped();
            if (address.NotAHost() is string why)
            {
                throw new MptcpAnycastConfigurationException(nameof(options.AnycastAddresses), text,
                    $"{why}; write the anycast address clients connect to (192.0.2.1 or 2001:db8::1)");
            }

            if (address.OnOneLinkOnly() is string local)
            {
                throw new MptcpAnycastConfigurationException(nameof(options.AnycastAddresses), text,
                    $"{local}; write the anycast address clients connect to (192.0.2.1 or 2001:db8::1)");
            }

            // A loopback connection never comes from another host, so no client that could be rerouted would ever
            // get an announcement. (Single-host tests leave AnycastAddresses empty instead: every connection counts.)
            if (IPAddress.IsLoopback(address))
            {
                throw new MptcpAnycastConfigurationException(nameof(options.AnycastAddresses), text,
                    "a loopback address is reachable from this host only; write the anycast address clients connect to, "
                    + "or leave AnycastAddresses empty to announce on every connection");
            }

            int first = anycast.IndexOf(address);
            if (first >= 0)
            {
                throw new MptcpAnycastConfigurationException(nameof(options.AnycastAddresses), text,
                    $"is already listed (as '{anycastTexts[first]}'); give each anycast address once");
            }

            anycast.Add(address);
            anycastTexts.Add(text);
        }

        IReadOnlyCollection<IPAddress>? host = hostAddresses;
        var unicast = new List<IPEndPoint>();
        bool fromAuto = false;
        var chosenByAuto = new List<IPEndPoint>();
        foreach (string? text in options.UnicastAddresses ?? [])
        {
            string trimmed = (text ?? "").Trim();
            if (trimmed.Equals("auto", StringComparison.OrdinalIgnoreCase))
            {
                host ??= HostInterfaces.Addresses();
                var chosen = AutoUnicast(host, anycast, unicast).ToList();
                unicast.AddRange(chosen);
                chosenByAuto.AddRange(chosen);
                fromAuto = true;
                continue;
            }

            IPEndPoint endPoint = ParseUnicast(trimmed, text);
            IPAddress address = endPoint.Address.Unmapped();
            if (address.NotAHost() is string why)
            {
                throw new MptcpAnycastConfigurationException(nameof(options.UnicastAddresses), text,
                    $"{why}; write this server's own unicast address, or auto");
            }

            // The announcement carries no interface, so a client would look for the address on its own link.
            if (address.OnOneLinkOnly() is string local)
            {
                throw new MptcpAnycastConfigurationException(nameof(options.UnicastAddresses), text,
                    $"{local}; write this server's own routable unicast address, or auto (which skips link-local ones)");
            }

            // A client that reached one of the anycast addresses is on another host and cannot reach this one's
            // loopback. With no anycast addresses (every connection counts) a loopback unicast address stays allowed:
            // single-host tests and benchmarks announce 127.0.0.2 to loopback clients, which can reach it.
            if (IPAddress.IsLoopback(address) && anycast.Count > 0)
            {
                throw new MptcpAnycastConfigurationException(nameof(options.UnicastAddresses), text,
                    "a loopback address is reachable from this host only, not by a client of the anycast addresses; write this server's own unicast address, or auto");
            }

            if (anycast.Contains(address))
            {
                throw new MptcpAnycastConfigurationException(nameof(options.UnicastAddresses), text,
                    "is also an anycast address; the unicast address must reach this server only");
            }

            if (unicast.Any(u => u.AddressFamily == address.AddressFamily))
            {
                throw new MptcpAnycastConfigurationException(nameof(options.UnicastAddresses), text,
                    $"a second {(address.AddressFamily == AddressFamily.InterNetwork ? "IPv4" : "IPv6")} unicast address; give at most one of each family");
            }

            if (!options.AllowUnassignedUnicastAddresses)
            {
                host ??= HostInterfaces.Addresses();
                if (!host.Any(h => h.Unmapped().Equals(address)))
                {
                    throw new MptcpAnycastConfigurationException(nameof(options.UnicastAddresses), text,
                        "no interface of this host has this address; add it, or set AllowUnassignedUnicastAddresses = true for a shared address forwarded to this host");
                }
            }

            unicast.Add(new IPEndPoint(address, endPoint.Port));
        }

        // Known without looking at the host, so it stops start-up before anything is bound, on hosts without MPTCP
        // too. When 'auto' finds nothing, that depends on the host and is decided when the transport starts.
        if (unicast.Count == 0 && !fromAuto && options.Mode is AnnouncementMode.Userspace or AnnouncementMode.Kernel)
        {
            throw new MptcpAnycastConfigurationException(nameof(options.UnicastAddresses), "",
                $"Mode = {options.Mode} needs at least one unicast address to announce (or 'auto')");
        }

        return new MptcpAnycastSettings
        {
            Mode = options.Mode,
            Anycast = anycast,
            Unicast = unicast,
            UnicastFromAuto = fromAuto,
            ChosenByAuto = chosenByAuto,
            AnnounceOn = options.AnnounceOn,
            AfterJoin = options.AfterJoin,
            JoinTimeout = options.JoinTimeout,
            AnnounceDelay = options.AnnounceDelay,
            ConfigureHost = options.ConfigureHost,
            AnnouncementsPerClientPerMinute = options.AnnouncementsPerClientPerMinute,
            EventSocketReceiveBufferSize = options.EventSocketReceiveBufferSize ?? DefaultEventSocketReceiveBufferSize,
        };
    }

    private static IPEndPoint ParseUnicast(string text, string? original)
    {
        const string Setting = nameof(MptcpAnycastOptions.UnicastAddresses);
        string addressText = text;
        string? portText = null;
        if (text.StartsWith('['))
        {
            int close = text.IndexOf(']', StringComparison.Ordinal);
            if (close < 0 || (close + 1 < text.Length && text[close + 1] != ':'))
            {
                throw Bad();
            }

            addressText = text[1..close];
            portText = close + 1 < text.Length ? text[(close + 2)..] : null;
            if (!addressText.Contains(':', StringComparison.Ordinal))
            {
                throw Bad();
            }
        }
        else if (text.Count(c => c == ':') == 1)
        {
            int colon = text.IndexOf(':', StringComparison.Ordinal);
            addressText = text[..colon];
            portText = text[(colon + 1)..];
        }

        if (!IPAddressText.TryParseStrict(addressText, out IPAddress? address))
        {
            throw Bad();
        }

        int port = 0;
        if (portText is not null
            && (!int.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out port) || port is < 1 or > 65535))
        {
            throw new MptcpAnycastConfigurationException(Setting, original, $"port '{portText}' is out of range (1-65535)");
        }

        return new IPEndPoint(address, port);

        MptcpAnycastConfigurationException Bad() => new(Setting, original,
            "not an address (write 192.0.2.10, 192.0.2.10:8443, 2001:db8::10 or [2001:db8::10]:8443, or auto)");
    }

    private static IEnumerable<IPEndPoint> AutoUnicast(IReadOnlyCollection<IPAddress> host, List<IPAddress> anycast, List<IPEndPoint> already)
    {
        IPAddress? v4 = host.Select(static a => a.Unmapped())
            .FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork && IsGlobal(a) && !anycast.Contains(a));
        IPAddress? v6 = host.Select(static a => a.Unmapped())
            .FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetworkV6 && IsGlobal(a) && !anycast.Contains(a));
        if (v4 is not null && !already.Any(u => u.AddressFamily == AddressFamily.InterNetwork))
        {
            yield return new IPEndPoint(v4, 0);
        }

        if (v6 is not null && !already.Any(u => u.AddressFamily == AddressFamily.InterNetworkV6))
        {
            yield return new IPEndPoint(v6, 0);
        }
    }

    /// <summary>Not loopback, link-local, unspecified or multicast. Private ranges count (a lab or an internal network).</summary>
    internal static bool IsGlobal(IPAddress address)
    {
        if (IPAddress.IsLoopback(address) || address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any))
        {
            return false;
        }

        if (address.AddressFamily == AddressFamily.InterNetworkV6)
        {
            return !address.IsIPv6LinkLocal && !address.IsIPv6Multicast && !address.IsIPv6SiteLocal;
        }

        byte[] b = address.GetAddressBytes();
        return !(b[0] == 169 && b[1] == 254) && b[0] < 224;
    }

    private static void CheckEnum<T>(string setting, T value) where T : struct, Enum
    {
        if (!Enum.IsDefined(value))
        {
            throw new MptcpAnycastConfigurationException(setting, value.ToString(), $"must be one of {string.Join(", ", Enum.GetNames<T>())}");
        }
    }
}
