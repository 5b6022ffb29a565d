using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace MptcpAnycast.Kestrel.Announcing;

/// <summary>
/// Limits how many unicast announcements one client gets per minute, so that a client cannot harvest the POPs'
/// unicast addresses (which bypass the anycast DDoS shield) by opening connections in a loop. Clients are counted
/// per IPv4 address and per IPv6 /64 (one subscriber's prefix). Fixed one-minute windows; idle entries are dropped.
/// </summary>
internal sealed class AnnouncementRateLimiter
{
    private static readonly TimeSpan Window = TimeSpan.FromMinutes(1);
    private readonly int _perMinute;
    private readonly Dictionary<UInt128, (long WindowStart, int Count)> _clients = [];
    private readonly int _maxClients;

    /// <param name="perMinute">Announcements allowed per client and minute; 0 means no limit.</param>
    /// <param name="maxClients">How many clients to remember; when full, the oldest windows are dropped first.</param>
    public AnnouncementRateLimiter(int perMinute, int maxClients = 100_000)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(perMinute);
        _perMinute = perMinute;
        _maxClients = maxClients;
    }

    public bool IsEnabled => _perMinute > 0;

    public int Tracked
    {
        get
        {
            lock (_clients)
            {
                return _clients.Count;
            }
        }
    }

    /// <summary>Counts one announcement for <paramref name="client"/>; false when its budget for this minute is spent.</summary>
    public bool TryAcquire(IPAddress client, DateTimeOffset now)
    {
        if (_perMinute == 0)
        {
            return true;
        }

        UInt128 key = KeyOf(client);
        long ticks = now.UtcTicks;
        lock (_clients)
        {
            if (_clients.TryGetValue(key, out (long WindowStart, int Count) entry) && ticks - entry.WindowStart < Window.Ticks)
            {
                if (entry.Count >= _perMinute)
                {
                    return false;
                }

                _clients[key] = (entry.WindowStart, entry.Count + 1);
                return true;
            }

            if (_clients.Count >= _maxClients)
            {
                Prune(ticks, force: true);
            }

            _clients[key] = (ticks, 1);
            return true;
        }
    }

    /// <summary>Drops windows that have ended. Called periodically.</summary>
    public void Prune(DateTimeOffset now)
    {
        lock (_clients)
        {
            Prune(now.UtcTicks, force: false);
        }
    }

    private void Prune(long ticks, bool force)
    {
        var expired = _clients.Where(kv => ticks - kv.Value.WindowStart >= Window.Ticks).Select(kv => kv.Key).ToList();
        foreach (UInt128 key in expired)
        {
            _clients.Remove(key);
        }

        if (force && _clients.Count >= _maxClients)
        {
            // Still full of live windows: forget the oldest half rather than grow without bound.
            foreach (UInt128 key in _clients.OrderBy(kv => kv.Value.WindowStart).Take(_clients.Count / 2).Select(kv => kv.Key).ToList())
            {
                _clients.Remove(key);
            }
        }
    }

    /// <summary>IPv4 (also IPv4-mapped) as itself; IPv6 by its /64.</summary>
    internal static UInt128 KeyOf(IPAddress address)
    {
        Span<byte> bytes = stackalloc byte[16];
        address = address.Unmapped();

        if (address.AddressFamily == AddressFamily.InterNetwork)
        {
            bytes.Clear();
            address.TryWriteBytes(bytes[12..], out _);
            return new UInt128(0, BinaryPrimitives.ReadUInt32BigEndian(bytes[12..]));
        }

        address.TryWriteBytes(bytes, out _);
        return new UInt128(BinaryPrimitives.ReadUInt64BigEndian(bytes), ulong.MaxValue); // low half marks "IPv6 /64"
    }
}
