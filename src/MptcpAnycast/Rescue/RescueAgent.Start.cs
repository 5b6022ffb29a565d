using System.Net;
using System.Text.Json;
using MptcpAnycast.Rescue.Agent;
using MptcpAnycast.Rescue.Bpf;
using MptcpAnycast.Rescue.Ownership;
using MptcpAnycast.Rescue.Peers;

namespace MptcpAnycast.Rescue;

// The start: settings checked, the program loaded, configured and attached (replacing an earlier agent's), the lookup
// protocol opened; nothing stays behind when a step fails.
public sealed partial class RescueAgent
{
    /// <summary>
    /// Checks <paramref name="options"/>, loads and attaches the program, and starts the lookup protocol. Nothing stays
    /// behind when it fails.
    /// </summary>
    /// <param name="options">The configuration.</param>
    /// <param name="report">Receives the agent's reports (on its own threads; keep it quick).</param>
    /// <param name="settingsPrefix">The configuration path that error messages name the settings by.</param>
    /// <exception cref="RescueConfigurationException">A setting is missing or bad, the lookup port is taken, or a unicast
    /// address is not this host's (checked before the program is loaded).</exception>
    /// <exception cref="RescueDataplaneException">The program cannot be loaded or attached (capabilities, kernel, libbpf).</exception>
    public static RescueAgent Start(RescueOptions options, Action<RescueEvent>? report = null, string settingsPrefix = RescueOptions.SectionName)
    {
        RescueSettings settings = RescueSettings.From(options, settingsPrefix);
        report ??= static _ => { };
        RescueDataplane? dataplane = null;
        RawPacketSender? sender = null;
        SocketTableLookup? socketTable = null;
        PeerChannel? channel = null;
        try
        {
            // Binding the lookup port once before any program is loaded finds a port in use or an address this host lacks,
            // and names the setting. The channel itself opens after the load, as the load's verification keeps the CPUs
            // busy: a peer's query answered meanwhile could come too late for its lookup.
            CheckLookupPort(settings, settingsPrefix);
            RescuePins? pins = settings.PinDirectory is null ? null : RescuePins.In(settings.PinDirectory, settings.Name);
            dataplane = RescueDataplane.Load(pins?.Owners);
            var config = new RescueDataplaneConfig
            {
                LocalIPv4 = settings.UnicastIPv4,
                LocalIPv6 = settings.UnicastIPv6,
                MssIPv4 = settings.MssIPv4,
                MssIPv6 = settings.MssIPv6,
            };
            // Enabled before it is attached: from the moment it is on the hook, the program must rescue what an earlier
            // agent's program rescued. Attached while configured off, it would pass a moved flow's segments to this
            // host's stack until the start is done, which resets the flow.
            dataplane.Configure(config, enabled: true);
            dataplane.SetAnycast(settings.Anycast);
            dataplane.SetPeers(settings.Peers.SelectMany(p => new[] { p.UnicastIPv4, p.UnicastIPv6 }).OfType<IPAddress>());
            try
            {
                sender = new RawPacketSender(settings.UnicastIPv4, settings.UnicastIPv6);
            }
            catch (System.Net.Sockets.SocketException e)
            {
                throw new RescueDataplaneException("cannot open the raw sockets for held segments and RSTs (needs CAP_NET_RAW)", e.ErrorCode, e);
            }

            socketTable = SocketTableLookup.Open();
            channel = OpenChannel(settings, settingsPrefix, socketTable);
            (string attachment, IReadOnlyList<string> warnings) = dataplane.Attach(settings.InterfaceIndex, earlier: EarlierPrograms(settings), pins: pins);
            var agent = new RescueAgent(settings, report, dataplane, sender, socketTable, channel, attachment);
            int forgotten = agent._owners.ForgetLocal();
            _ = agent.WarmUpAsync();
            agent.Report(RescueEventKind.Started,
                $"rescue agent {settings.Name} on {settings.Interface} ({attachment}): anycast {string.Join(", ", settings.Anycast)}; " +
                (forgotten == 0 ? "" : $"{forgotten} owner entries of connections opened here meanwhile taken back; ") +
                $"unicast {string.Join(", ", new[] { settings.UnicastIPv4, settings.UnicastIPv6 }.OfType<IPAddress>())}; " +
                $"peers {(settings.Peers.Count == 0 ? "none" : string.Join(", ", settings.Peers.Select(p => p.Name)))}; " +
                $"MSS budget {settings.MssIPv4}/{settings.MssIPv6}; lookup timeout {settings.LookupTimeout.TotalMilliseconds} ms");
            foreach (string warning in warnings)
            {
                agent.Report(RescueEventKind.Failed, warning);
            }

            return agent;
        }
        catch
        {
            channel?.Dispose();
            socketTable?.Dispose();
            sender?.Dispose();
            dataplane?.Dispose();
            throw;
        }
    }

    /// <summary>The largest status file an earlier agent's program ids are read from; an agent writes a few KiB.</summary>
    private const long MaxStatusBytes = 16 << 20;

    /// <summary>
    /// The ids of the programs that this agent's status file says an agent of the same name had attached to the same
    /// interface since this host booted (a killed agent leaves its file behind), or zeros: how a restarted agent without
    /// CAP_SYS_ADMIN, which cannot open its predecessor's programs, still names them.
    /// </summary>
    internal static (uint Ingress, uint Egress) EarlierPrograms(RescueSettings settings)
    {
        if (settings.StatusDirectory is null)
        {
            return default;
        }

        string path = StatusPath(settings.StatusDirectory, settings.Name);
        // Only what an agent writes: a regular file of bounded size. A FIFO would hold the start in open(2) (deaf to
        // SIGTERM, the lookup port bound), a link to a device would never end.
        if (!FileKinds.IsRegular(path) || new FileInfo(path).Length > MaxStatusBytes)
        {
            return default;
        }

        try
        {
            using JsonDocument status = JsonDocument.Parse(File.ReadAllBytes(path));
            JsonElement root = status.RootElement;
            // Program ids start again at every boot: a file from before this boot names someone else's programs.
            if (root.ValueKind == JsonValueKind.Object
                && root.TryGetProperty("writtenAt", out JsonElement written) && written.ValueKind == JsonValueKind.String
                && written.TryGetDateTimeOffset(out DateTimeOffset writtenAt) && writtenAt > BootTime()
                && root.TryGetProperty("interface", out JsonElement name) && name.ValueKind == JsonValueKind.String && name.GetString() == settings.Interface
                && root.TryGetProperty("programIds", out JsonElement ids) && ids.ValueKind == JsonValueKind.Array && ids.GetArrayLength() == 2
                && ids[0].ValueKind == JsonValueKind.Number && ids[0].TryGetUInt32(out uint ingress)
                && ids[1].ValueKind == JsonValueKind.Number && ids[1].TryGetUInt32(out uint egress))
            {
                return (ingress, egress);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException or ArgumentException or InvalidOperationException)
        {
            // No earlier agent, or a file it did not finish (or that is not its: bad UTF-8, a name the file system
            // refuses): the programs are found by name, or put first.
        }

        return default;
    }

    /// <summary>When this host booted (<c>btime</c> in <c>/proc/stat</c>); the epoch when that cannot be read.</summary>
    private static DateTimeOffset BootTime()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/stat"))
            {
                if (line.StartsWith("btime ", StringComparison.Ordinal)
                    && long.TryParse(line.AsSpan(6), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long seconds))
                {
                    return DateTimeOffset.FromUnixTimeSeconds(seconds);
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }

        return DateTimeOffset.UnixEpoch;
    }

    internal static PeerChannel OpenChannel(RescueSettings settings, string settingsPrefix, SocketTableLookup table)
    {
        try
        {
            return new PeerChannel(
                new PeerChannelOptions
                {
                    LocalName = settings.Name,
                    LocalIPv4 = settings.UnicastIPv4,
                    LocalIPv6 = settings.UnicastIPv6,
                    Port = settings.Port,
                    Peers = settings.Peers,
                },
                flow => table.Lookup(flow).IsOwned);
        }
        catch (ArgumentException e)
        {
            // RescueSettings.From checks all that the channel asserts; a disagreement between the two still names the section.
            throw new RescueConfigurationException($"{settingsPrefix}: {e.Message}");
        }
        catch (PeerChannelBindException e)
        {
            throw BindFailure(settingsPrefix, e.EndPoint, e.SocketError, e.Message);
        }
    }

    /// <summary>Binds the lookup port on each unicast address and lets it go again: the channel's binds will work.</summary>
    internal static void CheckLookupPort(RescueSettings settings, string settingsPrefix)
    {
        foreach (IPAddress address in new[] { settings.UnicastIPv4, settings.UnicastIPv6 }.OfType<IPAddress>())
        {
            using var probe = new System.Net.Sockets.Socket(address.AddressFamily, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
            try
            {
                probe.Bind(new IPEndPoint(address, settings.Port));
            }
            catch (System.Net.Sockets.SocketException e)
            {
                throw BindFailure(settingsPrefix, new IPEndPoint(address, settings.Port), e.SocketErrorCode, e.Message);
            }
        }
    }

    private static RescueConfigurationException BindFailure(string settingsPrefix, IPEndPoint endPoint, System.Net.Sockets.SocketError error, string message)
    {
        IPAddress address = endPoint.Address;
        string setting = $"{settingsPrefix}:{(address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? "UnicastIPv4" : "UnicastIPv6")}";
        string port = endPoint.Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return error switch
        {
            System.Net.Sockets.SocketError.AddressNotAvailable => new RescueConfigurationException(
                $"{setting} '{address}' is not an address of this host (or is still tentative while duplicate address detection runs): " +
                "the lookup protocol cannot bind to it; assign it to an interface first"),
            System.Net.Sockets.SocketError.AddressAlreadyInUse => new RescueConfigurationException(
                $"{settingsPrefix}:Port {port}: UDP port {port} on {address} ({setting}) is already in use, by another rescue agent or " +
                "another program; stop it or choose another port (the same on every POP)"),
            _ => new RescueConfigurationException($"{settingsPrefix}:Port {port} on {setting} '{address}': {message}"),
        };
    }
}
