using System.Diagnostics;
using System.Net;
using System.Text.Json;
using MptcpAnycast.Netlink;
using MptcpAnycast.Rescue.Agent;
using MptcpAnycast.Rescue.Bpf;
using MptcpAnycast.Rescue.Ownership;
using MptcpAnycast.Rescue.Peers;

namespace MptcpAnycast.Rescue;

/// <summary>
/// Keeps plain TCP connections alive across anycast route changes, for every TCP socket of this host (Kestrel's or
/// not): the rescue program on the uplink sends segments of connections this POP does not own to the POP that does,
/// found by asking the peers, which answer from their kernel's socket table. Runs in the network namespace of the
/// thread that starts it; needs CAP_BPF and CAP_NET_ADMIN (and CAP_NET_RAW for the RSTs and held segments).
/// </summary>
public sealed partial class RescueAgent : IDisposable
{
    private readonly RescueSettings _settings;
    private readonly Action<RescueEvent> _report;
    private readonly RescueDataplane _dataplane;
    private readonly OwnerRecorder _owners;
    private readonly RawPacketSender _sender;
    private readonly SocketTableLookup _socketTable;
    private readonly PeerChannel _channel;
    private readonly MissResolver _resolver;
    private readonly MissReader _reader;
    private readonly DateTimeOffset _started = DateTimeOffset.UtcNow;
    private readonly Timer? _statusTimer;
    private readonly Timer _expiryTimer;
    private long _ownersExpired;
    private readonly string _attachment;
    private int _disposed;
    private int _statusFailed;

    private RescueAgent(RescueSettings settings, Action<RescueEvent> report, RescueDataplane dataplane, RawPacketSender sender,
        SocketTableLookup socketTable, PeerChannel channel, string attachment)
    {
        _attachment = attachment;
        _settings = settings;
        _report = report;
        _dataplane = dataplane;
        _owners = new OwnerRecorder(dataplane, OpenedHereMeanwhile);
        _sender = sender;
        _socketTable = socketTable;
        _channel = channel;
        var lookup = new PeerOwnerLookup(channel, settings.Peers, settings.LookupTimeout / 3);
        _resolver = new MissResolver(
            lookup,
            new Output(this),
            new MissResolverSettings { LookupTimeout = settings.LookupTimeout, LookupsPerSecond = settings.LookupsPerSecond },
            TimeProvider.System,
            (message, e) => Report(RescueEventKind.Failed, message, e));
        _reader = new MissReader(dataplane, OnMiss);
        if (settings.StatusDirectory is not null)
        {
            _statusTimer = new Timer(_ => WriteStatus(), null, TimeSpan.Zero, TimeSpan.FromSeconds(1));
        }

        TimeSpan every = ExpiryInterval(settings.OwnerIdleTimeout);
        _expiryTimer = new Timer(_ => ExpireIdleOwners(), null, every, every);
    }

    /// <summary>How often idle owner entries are looked for: a quarter of the timeout, between 1 and 30 seconds.</summary>
    internal static TimeSpan ExpiryInterval(TimeSpan idleTimeout) =>
        TimeSpan.FromSeconds(Math.Clamp(idleTimeout.TotalSeconds / 4, 1, 30));

    /// <summary>The status file of the agent named <paramref name="name"/> in <paramref name="directory"/>.</summary>
    public static string StatusPath(string directory, string name) => Path.Combine(directory, name + ".json");

    /// <summary>This POP's name in the lookup protocol.</summary>
    public string Name => _settings.Name;

    /// <summary>Every counter by name: <c>program.*</c>, <c>lookups.*</c>, <c>peers.*</c>, <c>owners.expired</c> (see <see cref="RescueStatus.Counters"/>).</summary>
    public IReadOnlyDictionary<string, long> ReadCounters()
    {
        RescueDataplaneCounters program = _dataplane.ReadCounters();
        MissResolverCounters resolver = _resolver.Counters;
        PeerChannelStatistics peers = _channel.Statistics;
        var counters = new Dictionary<string, long>();
        foreach ((string name, ulong value) in program.All())
        {
            counters[$"program.{name}"] = (long)value;
        }

        foreach (var property in typeof(MissResolverCounters).GetProperties())
        {
            counters[$"lookups.{JsonNamingPolicy.SnakeCaseLower.ConvertName(property.Name)}"] = (long)property.GetValue(resolver)!;
        }

        foreach (var property in typeof(PeerChannelStatistics).GetProperties())
        {
            if (property.GetValue(peers) is long value)
            {
                counters[$"peers.{JsonNamingPolicy.SnakeCaseLower.ConvertName(property.Name)}"] = value;
            }
        }

        counters["owners.expired"] = Interlocked.Read(ref _ownersExpired);
        return counters;
    }

    /// <summary>What the agent and its program have done since it started.</summary>
    public RescueStatus GetStatus()
    {
        IReadOnlyDictionary<string, long> counters = ReadCounters();
        (uint Ingress, uint Egress) ids = _dataplane.ProgramIds;
        return new RescueStatus
        {
            Name = _settings.Name,
            Interface = _settings.Interface,
            Attachment = _attachment,
            ProgramIds = [ids.Ingress, ids.Egress],
            Anycast = [.. _settings.Anycast.Select(a => a.ToString())],
            Unicast = [.. new[] { _settings.UnicastIPv4, _settings.UnicastIPv6 }.OfType<IPAddress>().Select(a => a.ToString())],
            Peers = [.. _settings.Peers.Select(p => $"{p.Name} ({string.Join(", ", new[] { p.UnicastIPv4, p.UnicastIPv6 }.OfType<IPAddress>())})")],
            StartedAt = _started,
            OwnerCapacity = _dataplane.OwnerCapacity,
            Owners = [.. _dataplane.ListOwners(100).Select(o => $"{o.Flow} => {o.Owner}")],
            PendingLookups = _resolver.PendingCount,
            Counters = counters,
        };
    }

    /// <summary>Detaches the program (flows being rescued now die at the next segment) and stops the lookup protocol.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _statusTimer?.Dispose();
        _expiryTimer.Dispose();
        if (_settings.StatusDirectory is not null)
        {
            try
            {
                File.Delete(StatusPath(_settings.StatusDirectory, _settings.Name));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // A stale file says "written at" with its age; rescue status reports it as not running.
            }
        }

        _reader.Dispose();
        _dataplane.Dispose();
        _channel.Dispose();
        _socketTable.Dispose();
        _sender.Dispose();
        Report(RescueEventKind.Stopped, $"rescue agent {_settings.Name} stopped; the program is detached from {_settings.Interface}");
    }

    /// <summary>
    /// Runs the lookup path once on a flow nobody owns, so that the first real miss does not pay for loading the crypto
    /// library, JIT-compiling the codec and the socket-table lookup (hundreds of milliseconds on a cold process: longer
    /// than the client's retransmission timeout).
    /// </summary>
    private async Task WarmUpAsync()
    {
        try
        {
            IPAddress anycast = _settings.Anycast[0];
            IPAddress nobody = anycast.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any;
            var flow = new TcpFlow(nobody, 0, anycast, 0);
            _socketTable.Lookup(flow);
            RawPacketSender.CompleteTcpChecksum(RawPacketSender.BuildReset(new RescueMiss(flow, 0, 0, RescueMiss.Ack, null)));
            if (_settings.Peers.Count > 0)
            {
                await _channel.FindOwnerAsync(_settings.Peers, flow, TimeSpan.FromMilliseconds(500)).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Only a warm-up: the real lookups report their own failures.
        }
    }

    private void WriteStatus()
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            return;
        }

        try
        {
            Directory.CreateDirectory(_settings.StatusDirectory!);
            string path = StatusPath(_settings.StatusDirectory!, _settings.Name);
            string temporary = path + ".tmp";
            File.WriteAllText(temporary, GetStatus().ToJson());
            File.Move(temporary, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            if (Interlocked.Exchange(ref _statusFailed, 1) == 0)
            {
                Report(RescueEventKind.Failed, $"cannot write the status file in {_settings.StatusDirectory} (reported once)", e);
            }
        }
    }

    private void ExpireIdleOwners()
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            return;
        }

        try
        {
            int expired = _dataplane.ExpireIdleOwners(_settings.OwnerIdleTimeout);
            if (expired > 0)
            {
                Interlocked.Add(ref _ownersExpired, expired);
            }
        }
        catch (ObjectDisposedException)
        {
            // Stopping.
        }
        catch (RescueDataplaneException e)
        {
            Report(RescueEventKind.Failed, "cannot expire idle owner entries; they stay until the owner map makes room", e);
        }
    }

    private void OnMiss(RescueMiss miss) => _resolver.OnMiss(miss);

    /// <summary>Whether this host's kernel holds a connection on <paramref name="flow"/>'s tuple (see <see cref="OwnerRecorder"/>).</summary>
    private bool OpenedHereMeanwhile(TcpFlow flow)
    {
        try
        {
            return _socketTable.Lookup(flow).IsOwned;
        }
        catch (Exception e) when (e is NetlinkException or NetlinkFormatException)
        {
            Report(RescueEventKind.Failed, $"cannot check whether {flow} opened here meanwhile; its owner entry stays", e);
            return false;
        }
    }

    private void Report(RescueEventKind kind, string message, Exception? exception = null)
    {
        try
        {
            _report(new RescueEvent(kind, message, exception));
        }
        catch (Exception e)
        {
            Debug.Fail($"a rescue report handler threw: {e}");
        }
    }

    private sealed class Output(RescueAgent agent) : IRescueOutput
    {
        public void SetOwner(TcpFlow flow, IPAddress owner, TimeSpan waited)
        {
            if (!agent._owners.Record(flow, owner))
            {
                agent.Report(RescueEventKind.FlowRescued,
                    $"{flow} is owned by {owner}, but a new connection on the same tuple opened here while the owner was looked up: it stays local");
                return;
            }

            agent.Report(RescueEventKind.FlowRescued,
                $"{flow} is owned by {owner}: tunnelled from now on (owner found {waited.TotalMilliseconds:0.0} ms after the first unknown segment)");
        }

        public bool SendEncapsulated(IPAddress owner, ReadOnlySpan<byte> packet) => agent._sender.SendEncapsulated(owner, packet);

        public void SendReset(RescueMiss miss)
        {
            agent._sender.SendReset(miss);
            agent.Report(RescueEventKind.FlowReset, $"no POP owns {miss.Flow}: the client was sent a RST");
        }
    }
}
