using System.Net;
using MptcpAnycast.Kestrel.Announcing;

namespace MptcpAnycast.Tests.Announcing;

public sealed class AnnouncementRateLimiterTests
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 26, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public void A_client_gets_its_budget_per_minute_then_nothing_until_the_next_window()
    {
        var limiter = new AnnouncementRateLimiter(perMinute: 3);
        IPAddress client = IPAddress.Parse("198.51.100.7");

        Assert.True(limiter.TryAcquire(client, T0));
        Assert.True(limiter.TryAcquire(client, T0.AddSeconds(10)));
        Assert.True(limiter.TryAcquire(client, T0.AddSeconds(20)));
        Assert.False(limiter.TryAcquire(client, T0.AddSeconds(30)));
        Assert.True(limiter.TryAcquire(IPAddress.Parse("198.51.100.8"), T0.AddSeconds(30))); // another client
        Assert.True(limiter.TryAcquire(client, T0.AddSeconds(61)));
    }

    [Fact]
    public void Ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4()
    {
        var limiter = new AnnouncementRateLimiter(perMinute: 1);
        Assert.True(limiter.TryAcquire(IPAddress.Parse("2001:db8:1:2::1"), T0));
        Assert.False(limiter.TryAcquire(IPAddress.Parse("2001:db8:1:2:ffff::9"), T0)); // same /64
        Assert.True(limiter.TryAcquire(IPAddress.Parse("2001:db8:1:3::1"), T0));      // next /64

        Assert.True(limiter.TryAcquire(IPAddress.Parse("192.0.2.5"), T0));
        Assert.False(limiter.TryAcquire(IPAddress.Parse("::ffff:192.0.2.5"), T0));
        Assert.NotEqual(AnnouncementRateLimiter.KeyOf(IPAddress.Parse("::c000:205")), AnnouncementRateLimiter.KeyOf(IPAddress.Parse("192.0.2.5")));
    }

    [Fact]
    public void Zero_means_no_limit_and_memory_stays_bounded()
    {
        var unlimited = new AnnouncementRateLimiter(0);
        Assert.All(Enumerable.Range(0, 1000), _ => Assert.True(unlimited.TryAcquire(IPAddress.Loopback, T0)));

        var bounded = new AnnouncementRateLimiter(perMinute: 5, maxClients: 100);
        for (int i = 0; i < 1000; i++)
        {
            bounded.TryAcquire(new IPAddress(BitConverter.GetBytes(i + 1)), T0.AddMilliseconds(i));
        }

        Assert.True(bounded.Tracked <= 100, $"{bounded.Tracked} clients remembered");
        bounded.Prune(T0.AddMinutes(2));
        Assert.Equal(0, bounded.Tracked);
    }
}
