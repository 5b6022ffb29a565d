using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Rescue.Ownership;

namespace MptcpAnycast.Rescue.Agent;

/// <summary>The bounds of <see cref="MissResolver"/>.</summary>
internal sealed record MissResolverSettings
{
    /// <summary>How long a lookup may take before the flow is taken to have no owner and is reset.</summary>
    public TimeSpan LookupTimeout { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>Lookups started per second at most; misses beyond are dropped (the client sends the segment again).</summary>
    public int LookupsPerSecond { get; init; } = 2000;

    /// <summary>Flows looked up at once at most.</summary>
    public int MaxPendingFlows { get; init; } = 1024;

    /// <summary>Segments kept per flow while its owner is looked up; later ones are dropped (the client resends them).</summary>
    public int MaxHeldPerFlow { get; init; } = 16;

    /// <summary>How long a flow that no POP owned is answered with a RST at once, without asking again.</summary>
    public TimeSpan NoOwnerMemory { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Client prefixes whose last owner is remembered as a hint.</summary>
    public int MaxHints { get; init; } = 65536;

    /// <summary>RSTs sent per second at most (a spoofed flood of unknown flows must not turn this POP into a reflector).</summary>
    public int ResetsPerSecond { get; init; } = 1000;
}

/// <summary>Counters of <see cref="MissResolver"/> (since it started).</summary>
internal readonly record struct MissResolverCounters(
    long Misses,
    long Coalesced,
    long Lookups,
    long Found,
    long NotFound,
    long LookupRateLimited,
    long PendingFull,
    long HeldSent,
    long HeldDropped,
    long Resets,
    long ResetsRateLimited,
    long HintsUsed,
    long Failures,
    long LastFoundMicroseconds,
    long MaxFoundMicroseconds,
    long TotalFoundMicroseconds);

/// <summary>
/// Turns the program's miss reports into owner map entries. One lookup per flow however many of its segments
/// arrive meanwhile (they are held, up to a bound, and sent on to the owner once it is known); the owner last found
/// for the client's /24 or /48 is asked first; lookups per second and flows pending are bounded. A flow that no POP
/// owns within <see cref="MissResolverSettings.LookupTimeout"/> is reset at once: a stall is worse than a reset.
/// </summary>
internal sealed class MissResolver
{
    private readonly IFlowOwnerLookup _lookup;
    private readonly IRescueOutput _output;
    private readonly MissResolverSettings _settings;
    private readonly TimeProvider _time;
    private readonly Action<string, Exception?>? _log;
    private readonly Lock _gate = new();
    private readonly Dictionary<TcpFlow, Pending> _pending = [];
    private readonly Dictionary<TcpFlow, long> _noOwner = [];
    private readonly Dictionary<(AddressFamily, UInt128), RescuePeer> _hints = [];
    private readonly TokenBucket _lookupBudget;
    private readonly TokenBucket _resetBudget;
    private long _misses, _coalesced, _lookups, _found, _notFound, _rateLimited, _pendingFull, _heldSent, _heldDropped,
        _resets, _resetsRateLimited, _hintsUsed, _failures, _lastFoundMicros, _maxFoundMicros, _totalFoundMicros;

    /// <summary>
    /// Makes a resolver; <paramref name="log"/> is called with a message (and the exception, if any) when a lookup or a
    /// send fails.
    /// </summary>
    public MissResolver(IFlowOwnerLookup lookup, IRescueOutput output, MissResolverSettings settings, TimeProvider time, Action<string, Exception?>? log = null)
    {
        _lookup = lookup;
        _output = output;
        _settings = settings;
        _time = time;
        _log = log;
        _lookupBudget = new TokenBucket(settings.LookupsPerSecond, settings.LookupsPerSecond, time);
        _resetBudget = new TokenBucket(settings.ResetsPerSecond, settings.ResetsPerSecond, time);
    }

    public int PendingCount
    {
        get
        {
            lock (_gate)
            {
                return _pending.Count;
            }
        }
    }

    public MissResolverCounters Counters => new(
        Interlocked.Read(ref _misses), Interlocked.Read(ref _coalesced), Interlocked.Read(ref _lookups), Interlocked.Read(ref _found),
        Interlocked.Read(ref _notFound), Interlocked.Read(ref _rateLimited), Interlocked.Read(ref _pendingFull),
        Interlocked.Read(ref _heldSent), Interlocked.Read(ref _heldDropped), Interlocked.Read(ref _resets),
        Interlocked.Read(ref _resetsRateLimited), Interlocked.Read(ref _hintsUsed), Interlocked.Read(ref _failures),
        Interlocked.Read(ref _lastFoundMicros), Interlocked.Read(ref _maxFoundMicros), Interlocked.Read(ref _totalFoundMicros));

    /// <summary>Called for every miss report, on the reader's thread: decides quickly and starts at most one lookup.</summary>
    /// <returns>The lookup started for this miss, or null (coalesced, rate-limited, reset at once).</returns>
    public Task? OnMiss(RescueMiss miss)
    {
        Interlocked.Increment(ref _misses);
        Pending pending;
        RescuePeer? hint;
        lock (_gate)
        {
            if (_pending.TryGetValue(miss.Flow, out Pending? existing))
            {
                Interlocked.Increment(ref _coalesced);
                existing.Add(miss, _settings.MaxHeldPerFlow, ref _heldDropped);
                return null;
            }

            long now = _time.GetTimestamp();
            if (_noOwner.TryGetValue(miss.Flow, out long until) && now < until)
            {
                Reset(miss);
                return null;
            }

            if (_pending.Count >= _settings.MaxPendingFlows)
            {
                Interlocked.Increment(ref _pendingFull);
                return null;
            }

            if (!_lookupBudget.TryAcquire())
            {
                Interlocked.Increment(ref _rateLimited);
                return null;
            }

            pending = new Pending(miss, now);
            _pending.Add(miss.Flow, pending);
            _hints.TryGetValue(PrefixOf(miss.Flow.ClientAddress), out hint);
        }

        if (hint is not null)
        {
            Interlocked.Increment(ref _hintsUsed);
        }

        Interlocked.Increment(ref _lookups);
        return ResolveAsync(pending, hint);
    }

    private async Task ResolveAsync(Pending pending, RescuePeer? hint)
    {
        TcpFlow flow = pending.Flow;
        RescuePeer? owner = null;
        try
        {
            using var timeout = new CancellationTokenSource(_settings.LookupTimeout, _time);
            owner = await _lookup.FindOwnerAsync(flow, hint, timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        catch (Exception e)
        {
            Interlocked.Increment(ref _failures);
            _log?.Invoke($"the owner lookup of {flow} failed", e);
        }

        IPAddress? ownerAddress = owner is null ? null : (flow.IsIPv6 ? owner.UnicastIPv6 : owner.UnicastIPv4);
        List<byte[]> held;
        RescueMiss latest;
        lock (_gate)
        {
            _pending.Remove(flow);
            held = pending.Held;
            latest = pending.Latest;
            if (ownerAddress is not null)
            {
                if (_hints.Count >= _settings.MaxHints)
                {
                    _hints.Clear();
                }

                _hints[PrefixOf(flow.ClientAddress)] = owner!;
            }
            else
            {
                if (_noOwner.Count >= _settings.MaxPendingFlows * 4)
                {
                    ForgetExpiredNoOwner();
                }

                _noOwner[flow] = _time.GetTimestamp() + (long)(_settings.NoOwnerMemory.TotalSeconds * _time.TimestampFrequency);
            }
        }

        if (ownerAddress is null)
        {
            Interlocked.Increment(ref _notFound);
            Reset(latest);
            return;
        }

        Interlocked.Increment(ref _found);
        try
        {
            // From the first miss report to the owner map entry: how long the client's segments waited.
            TimeSpan waited = _time.GetElapsedTime(pending.Started);
            _output.SetOwner(flow, ownerAddress, waited);
            long micros = (long)waited.TotalMicroseconds;
            Interlocked.Exchange(ref _lastFoundMicros, micros);
            Interlocked.Add(ref _totalFoundMicros, micros);
            long max;
            while (micros > (max = Interlocked.Read(ref _maxFoundMicros)) && Interlocked.CompareExchange(ref _maxFoundMicros, micros, max) != max)
            {
            }

            foreach (byte[] packet in held)
            {
                Interlocked.Increment(ref _output.SendEncapsulated(ownerAddress, packet) ? ref _heldSent : ref _heldDropped);
            }
        }
        catch (Exception e)
        {
            Interlocked.Increment(ref _failures);
            _log?.Invoke($"cannot hand {flow} to its owner {owner!.Name} ({ownerAddress})", e);
        }
    }

    private void Reset(RescueMiss miss)
    {
        if (!_resetBudget.TryAcquire())
        {
            Interlocked.Increment(ref _resetsRateLimited);
            return;
        }

        try
        {
            _output.SendReset(miss);
            Interlocked.Increment(ref _resets);
        }
        catch (Exception e)
        {
            Interlocked.Increment(ref _failures);
            _log?.Invoke($"cannot reset {miss.Flow}", e);
        }
    }

    private void ForgetExpiredNoOwner()
    {
        long now = _time.GetTimestamp();
        foreach ((TcpFlow flow, long until) in _noOwner.ToArray())
        {
            if (until <= now)
            {
                _noOwner.Remove(flow);
            }
        }

        if (_noOwner.Count >= _settings.MaxPendingFlows * 4)
        {
            _noOwner.Clear();
        }
    }

    /// <summary>The client's /24 (IPv4) or /48 (IPv6): the hint's key.</summary>
    internal static (AddressFamily, UInt128) PrefixOf(IPAddress address)
    {
        Span<byte> bytes = stackalloc byte[16];
        bytes.Clear();
        address.TryWriteBytes(bytes, out int written);
        int keep = written == 4 ? 3 : 6;
        bytes[keep..].Clear();
        return (address.AddressFamily, System.Buffers.Binary.BinaryPrimitives.ReadUInt128BigEndian(bytes));
    }

    private sealed class Pending(RescueMiss first, long started)
    {
        public long Started { get; } = started;

        public TcpFlow Flow { get; } = first.Flow;

        public RescueMiss Latest { get; private set; } = first;

        public List<byte[]> Held { get; } = first.Held is { } packet ? [packet] : [];

        public void Add(RescueMiss miss, int maxHeld, ref long dropped)
        {
            Latest = miss;
            if (miss.Held is not { } packet)
            {
                return;
            }

            if (Held.Count < maxHeld)
            {
                Held.Add(packet);
            }
            else
            {
                Interlocked.Increment(ref dropped);
            }
        }
    }
}
