using System.Collections.Frozen;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace MptcpAnycast.Rescue.Peers;

/// <summary>
/// What this POP keeps about one peer: its key, the addresses its datagrams may come from, where to send to it, its
/// replay window, the bucket its queries draw from, and the sequence numbers of what this POP sends it.
/// </summary>
internal sealed class PeerState
{
    private readonly UInt128? _sourceIPv4;
    private readonly UInt128? _sourceIPv6;
    private ulong _sequence;

    public PeerState(RescuePeer peer, IPEndPoint remote, ulong firstSequence, TokenBucket inboundQueries)
    {
        Peer = peer;
        Key = peer.Key.ToArray();
        _sourceIPv4 = peer.UnicastIPv4 is null ? null : AddressBits.SourceKey(peer.UnicastIPv4);
        _sourceIPv6 = peer.UnicastIPv6 is null ? null : AddressBits.SourceKey(peer.UnicastIPv6);
        Remote = remote;
        RemoteAddress = remote.Serialize();
        _sequence = firstSequence - 1;
        InboundQueries = inboundQueries;
    }

    public RescuePeer Peer { get; }

    public string Name => Peer.Name;

    public byte[] Key { get; }

    /// <summary>The peer's address and port this POP sends its queries to.</summary>
    public IPEndPoint Remote { get; }

    /// <summary><see cref="Remote"/> serialized once, so that sending allocates nothing.</summary>
    public SocketAddress RemoteAddress { get; }

    public ReplayWindow Window { get; } = new();

    public TokenBucket InboundQueries { get; }

    /// <summary>The next sequence number for a message to this peer.</summary>
    public ulong NextSequence() => Interlocked.Increment(ref _sequence);

    /// <summary>True when <paramref name="sourceKey"/> (see <see cref="AddressBits.SourceKey(IPAddress)"/>) is one of the peer's unicast addresses.</summary>
    public bool IsFrom(UInt128 sourceKey) => sourceKey == _sourceIPv4 || sourceKey == _sourceIPv6;

    public override string ToString() => Name;
}

/// <summary>
/// The configured peers by name, and the receive side of the protocol: <see cref="Open"/> takes a datagram through
/// every check, in the order that trusts nothing before the MAC and spends little on garbage.
/// </summary>
internal sealed class PeerDirectory
{
    private readonly FrozenDictionary<string, PeerState> _peers;
    private readonly FrozenDictionary<string, PeerState>.AlternateLookup<ReadOnlySpan<char>> _byName;
    private readonly TimeProvider _time;
    private readonly long _maxSkewMicroseconds;

    /// <summary>Validates <paramref name="options"/> (a configuration error throws) and sets up every peer.</summary>
    public PeerDirectory(PeerChannelOptions options, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(time);
        if (!PeerMessageCodec.IsValidName(options.LocalName))
        {
            throw new ArgumentException($"the local POP name '{options.LocalName}' is not 1 to 32 letters, digits, '-', '.' or '_'", nameof(options));
        }

        IPAddress? local4 = options.LocalIPv4?.Unmapped();
        IPAddress? local6 = options.LocalIPv6;
        if (local4 is not null && local4.AddressFamily != AddressFamily.InterNetwork)
        {
            throw new ArgumentException($"LocalIPv4 {local4} is not an IPv4 address", nameof(options));
        }

        if (local6 is not null && (local6.AddressFamily != AddressFamily.InterNetworkV6 || local6.IsIPv4MappedToIPv6))
        {
            throw new ArgumentException($"LocalIPv6 {local6} is not an IPv6 address", nameof(options));
        }

        if (local4 is null && local6 is null)
        {
            throw new ArgumentException("the channel needs a local IPv4 or IPv6 unicast address", nameof(options));
        }

        ArgumentOutOfRangeException.ThrowIfNegative(options.Port, nameof(options.Port));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(options.Port, ushort.MaxValue, nameof(options.Port));
        int peerPort = options.PeerPort ?? options.Port;
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(peerPort, nameof(options.PeerPort));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(peerPort, ushort.MaxValue, nameof(options.PeerPort));
        if (options.MaxClockSkew < TimeSpan.Zero && options.MaxClockSkew != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxClockSkew, "MaxClockSkew is negative");
        }

        _time = time;
        _maxSkewMicroseconds = options.MaxClockSkew == Timeout.InfiniteTimeSpan ? -1 : options.MaxClockSkew.Ticks / TimeSpan.TicksPerMicrosecond;
        ulong firstSequence = NowMicroseconds();
        var peers = new Dictionary<string, PeerState>(StringComparer.Ordinal);
        foreach (RescuePeer peer in options.Peers)
        {
            ArgumentNullException.ThrowIfNull(peer);
            if (!PeerMessageCodec.IsValidName(peer.Name))
            {
                throw new ArgumentException($"the peer name '{peer.Name}' is not 1 to 32 letters, digits, '-', '.' or '_'", nameof(options));
            }

            if (peer.Name == options.LocalName)
            {
                throw new ArgumentException($"the peer '{peer.Name}' has this POP's own name", nameof(options));
            }

            if (peer.Key.Length < PeerChannelOptions.MinKeyLength)
            {
                throw new ArgumentException($"the key shared with '{peer.Name}' has {peer.Key.Length} bytes; at least {PeerChannelOptions.MinKeyLength} are needed", nameof(options));
            }

            IPAddress? peer4 = peer.UnicastIPv4?.Unmapped();
            if (peer4 is not null && peer4.AddressFamily != AddressFamily.InterNetwork)
            {
                throw new ArgumentException($"the IPv4 address {peer4} of '{peer.Name}' is not an IPv4 address", nameof(options));
            }

            IPAddress? peer6 = peer.UnicastIPv6;
            if (peer6 is not null && (peer6.AddressFamily != AddressFamily.InterNetworkV6 || peer6.IsIPv4MappedToIPv6))
            {
                throw new ArgumentException($"the IPv6 address {peer6} of '{peer.Name}' is not an IPv6 address", nameof(options));
            }

            // The family both ends have, IPv6 first; the peer makes the same choice, so each end's datagrams come
            // from the address the other has configured for it.
            IPAddress remote = local6 is not null && peer6 is not null ? peer6
                : local4 is not null && peer4 is not null ? peer4
                : throw new ArgumentException($"the peer '{peer.Name}' has no unicast address of a family this POP has", nameof(options));

            var inbound = new TokenBucket(options.InboundQueriesPerPeerPerSecond, options.InboundQueryBurst, time);
            if (!peers.TryAdd(peer.Name, new PeerState(peer, new IPEndPoint(remote, peerPort), firstSequence, inbound)))
            {
                throw new ArgumentException($"the peer '{peer.Name}' is configured twice", nameof(options));
            }
        }

        LocalName = options.LocalName;
        LocalNameBytes = Encoding.ASCII.GetBytes(options.LocalName);
        _peers = peers.ToFrozenDictionary(StringComparer.Ordinal);
        _byName = _peers.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    public string LocalName { get; }

    /// <summary>The local name as it goes on the wire.</summary>
    public byte[] LocalNameBytes { get; }

    public IEnumerable<PeerState> Peers => _peers.Values;

    public bool TryGet(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out PeerState? peer) => _peers.TryGetValue(name, out peer);

    /// <summary>
    /// Takes a received datagram through every check: structure, the named peer, <paramref name="sourceKey"/> (the
    /// datagram's source, see <see cref="AddressBits.SourceKey(IPAddress)"/>; null skips the check), the MAC under
    /// that peer's key, the clock bound and the replay window. Only on <see cref="PeerMessageStatus.Ok"/> are
    /// <paramref name="message"/> and <paramref name="peer"/> set, and then the sequence number is recorded.
    /// </summary>
    public PeerMessageStatus Open(ReadOnlySpan<byte> datagram, UInt128? sourceKey, out PeerMessage message, out PeerState? peer)
    {
        peer = null;
        PeerMessageStatus status = PeerMessageCodec.Read(datagram, out message, out ReadOnlySpan<byte> name);
        if (status != PeerMessageStatus.Ok)
        {
            return status;
        }

        Span<char> chars = stackalloc char[PeerMessageCodec.MaxNameLength];
        for (int i = 0; i < name.Length; i++)
        {
            chars[i] = (char)name[i]; // ASCII: Read checked the name
        }

        if (!_byName.TryGetValue(chars[..name.Length], out PeerState? candidate))
        {
            message = default;
            return PeerMessageStatus.UnknownPeer;
        }

        // The source is spoofable, so this check is a cheap filter (and keeps answers from being sent to anyone but a
        // peer), not authentication: that is the MAC's job.
        if (sourceKey is { } source && !candidate.IsFrom(source))
        {
            message = default;
            return PeerMessageStatus.WrongSource;
        }

        if (!PeerMessageCodec.VerifyMac(datagram, candidate.Key))
        {
            message = default;
            return PeerMessageStatus.BadMac;
        }

        if (_maxSkewMicroseconds >= 0 && message.Sequence > NowMicroseconds() + (ulong)_maxSkewMicroseconds)
        {
            message = default;
            return PeerMessageStatus.FromFuture;
        }

        switch (candidate.Window.TryAccept(message.Sequence))
        {
            case ReplayCheck.Replayed:
                message = default;
                return PeerMessageStatus.Replayed;
            case ReplayCheck.BehindWindow:
                message = default;
                return PeerMessageStatus.BehindWindow;
        }

        peer = candidate;
        return PeerMessageStatus.Ok;
    }

    private ulong NowMicroseconds() => (ulong)((_time.GetUtcNow().UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) / TimeSpan.TicksPerMicrosecond);
}
