namespace MptcpAnycast.Rescue;

/// <summary>
/// A token bucket: <c>perSecond</c> tokens a second, at most <c>burst</c> saved up (the lookup protocol, the agent's lookups and RSTs). Bursts are
/// legitimate (a route change moves many flows at once), so a bucket fits better than the fixed one-minute windows of
/// the Kestrel package's announcement limiter, which is also per client address rather than per peer. Thread-safe.
/// </summary>
internal sealed class TokenBucket
{
    private readonly TimeProvider _time;
    private readonly double _tokensPerTimestampTick;
    private readonly double _burst;
    private readonly Lock _gate = new();
    private double _tokens;
    private long _last;

    /// <param name="perSecond">Tokens added per second; 0 means no limit.</param>
    /// <param name="burst">The most tokens saved up (and the bucket's start); at least 1 when limited.</param>
    /// <param name="time">The clock; tests pass a fake one.</param>
    public TokenBucket(int perSecond, int burst, TimeProvider time)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(perSecond);
        ArgumentNullException.ThrowIfNull(time);
        if (perSecond > 0)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(burst, 1);
        }

        _time = time;
        PerSecond = perSecond;
        _tokensPerTimestampTick = (double)perSecond / time.TimestampFrequency;
        _burst = burst;
        _tokens = burst;
        _last = time.GetTimestamp();
    }

    public int PerSecond { get; }

    public bool IsEnabled => PerSecond > 0;

    /// <summary>Takes one token; false when the bucket is empty (the caller drops and counts).</summary>
    public bool TryAcquire()
    {
        if (!IsEnabled)
        {
            return true;
        }

        long now = _time.GetTimestamp();
        lock (_gate)
        {
            if (now > _last)
            {
                _tokens = Math.Min(_burst, _tokens + ((now - _last) * _tokensPerTimestampTick));
                _last = now;
            }

            if (_tokens < 1)
            {
                return false;
            }

            _tokens -= 1;
            return true;
        }
    }
}
