using MptcpAnycast.Rescue;
using Microsoft.Extensions.Time.Testing;
using MptcpAnycast.Rescue.Peers;

namespace MptcpAnycast.Tests.Rescue;

public sealed class TokenBucketTests
{
    [Fact]
    public void The_burst_is_spent_then_tokens_come_back_at_the_rate()
    {
        var clock = new FakeTimeProvider();
        var limiter = new TokenBucket(perSecond: 10, burst: 3, clock);
        Assert.Equal(3, Take(limiter, 100));

        clock.Advance(TimeSpan.FromMilliseconds(99));
        Assert.Equal(0, Take(limiter, 100)); // 0.99 of a token
        clock.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(1, Take(limiter, 100));

        clock.Advance(TimeSpan.FromSeconds(0.5));
        Assert.Equal(3, Take(limiter, 100)); // 5 earned, 3 kept

        clock.Advance(TimeSpan.FromHours(1));
        Assert.Equal(3, Take(limiter, 100));
    }

    [Fact]
    public void Zero_means_no_limit()
    {
        var limiter = new TokenBucket(perSecond: 0, burst: 0, new FakeTimeProvider());
        Assert.False(limiter.IsEnabled);
        Assert.Equal(10_000, Take(limiter, 10_000));
    }

    [Fact]
    public void Concurrent_takers_get_exactly_the_burst()
    {
        var limiter = new TokenBucket(perSecond: 1, burst: 500, new FakeTimeProvider());
        int granted = 0;
        Parallel.For(0, 4, _ => Interlocked.Add(ref granted, Take(limiter, 1000)));
        Assert.Equal(500, granted);
    }

    [Fact]
    public void A_limited_bucket_needs_room_for_one()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new TokenBucket(5, 0, TimeProvider.System));
        Assert.Throws<ArgumentOutOfRangeException>(() => new TokenBucket(-1, 1, TimeProvider.System));
    }

    private static int Take(TokenBucket limiter, int attempts)
    {
        int granted = 0;
        for (int i = 0; i < attempts; i++)
        {
            granted += limiter.TryAcquire() ? 1 : 0;
        }

        return granted;
    }
}
