using Microsoft.Extensions.Time.Testing;
using MptcpAnycast.Rescue.Peers;
using static MptcpAnycast.Tests.Rescue.Peers.PeerKit;

namespace MptcpAnycast.Tests.Rescue.Peers;

public sealed class ReplayWindowTests
{
    [Fact]
    public void A_number_is_accepted_once()
    {
        var window = new ReplayWindow();
        Assert.Equal(ReplayCheck.Accepted, window.TryAccept(1_000));
        Assert.Equal(ReplayCheck.Replayed, window.TryAccept(1_000));
        Assert.Equal(ReplayCheck.Accepted, window.TryAccept(1_001));
        Assert.Equal(ReplayCheck.Replayed, window.TryAccept(1_001));
        Assert.Equal(ReplayCheck.Replayed, window.TryAccept(1_000));
        Assert.Equal(1_001ul, window.Highest);
    }

    [Fact]
    public void Out_of_order_numbers_inside_the_window_are_accepted_once_each()
    {
        var window = new ReplayWindow();
        Assert.Equal(ReplayCheck.Accepted, window.TryAccept(500));
        foreach (ulong late in new ulong[] { 499, 450, 373, 498 })
        {
            Assert.Equal(ReplayCheck.Accepted, window.TryAccept(late));
        }

        foreach (ulong again in new ulong[] { 500, 499, 450, 373, 498 })
        {
            Assert.Equal(ReplayCheck.Replayed, window.TryAccept(again));
        }

        Assert.Equal(ReplayCheck.Accepted, window.TryAccept(497)); // a neighbour never seen
        Assert.Equal(500ul, window.Highest);
    }

    [Fact]
    public void The_window_is_exactly_its_width_deep()
    {
        var window = new ReplayWindow();
        Assert.Equal(ReplayCheck.Accepted, window.TryAccept(10_000));
        Assert.Equal(ReplayCheck.Accepted, window.TryAccept(10_000 - (ReplayWindow.Width - 1)));
        Assert.Equal(ReplayCheck.BehindWindow, window.TryAccept(10_000 - ReplayWindow.Width));
        Assert.Equal(ReplayCheck.BehindWindow, window.TryAccept(0));
    }

    [Fact]
    public void Moving_the_window_keeps_what_is_still_inside_and_forgets_the_rest()
    {
        var window = new ReplayWindow();
        Assert.Equal(ReplayCheck.Accepted, window.TryAccept(100));
        Assert.Equal(ReplayCheck.Accepted, window.TryAccept(160)); // 100 is now 60 behind: still remembered
        Assert.Equal(ReplayCheck.Replayed, window.TryAccept(100));
        Assert.Equal(ReplayCheck.Accepted, window.TryAccept(130));
        Assert.Equal(ReplayCheck.Accepted, window.TryAccept(1_000_000)); // far jump: everything before is behind
        Assert.Equal(ReplayCheck.BehindWindow, window.TryAccept(160));
        Assert.Equal(ReplayCheck.Accepted, window.TryAccept(999_999));
        Assert.Equal(ReplayCheck.Accepted, window.TryAccept(ulong.MaxValue));
        Assert.Equal(ReplayCheck.Replayed, window.TryAccept(ulong.MaxValue));
    }

    [Fact]
    public void Concurrent_callers_accept_each_number_exactly_once()
    {
        var window = new ReplayWindow();
        const int Numbers = 20_000;
        int[] accepted = new int[Numbers];
        Parallel.For(0, 4, new ParallelOptions { MaxDegreeOfParallelism = 4 }, _ =>
        {
            for (int n = 0; n < Numbers; n++)
            {
                if (window.TryAccept((ulong)n + 1) == ReplayCheck.Accepted)
                {
                    Interlocked.Increment(ref accepted[n]);
                }
            }
        });

        // Every caller goes in order, so the first try of n always comes before anyone's try of n + Width.
        Assert.All(accepted, count => Assert.Equal(1, count));
    }

    [Fact]
    public void A_restarted_sender_starts_above_everything_it_sent_before()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        PeerDirectory a = DirectoryOfA(clock);
        UInt128? fromB = AddressBits.SourceKey(B4);
        PeerDirectory before = DirectoryOfB(clock);
        for (int i = 0; i < 300; i++)
        {
            Assert.Equal(PeerMessageStatus.Ok, a.Open(Encode(before, "pop-a", PeerMessageType.Query, Flow4), fromB, out _, out _));
        }

        clock.Advance(TimeSpan.FromMilliseconds(1)); // the restart: 1000 µs, above the 300 numbers sent
        PeerDirectory after = DirectoryOfB(clock);
        byte[] first = Encode(after, "pop-a", PeerMessageType.Query, Flow4);
        Assert.Equal(PeerMessageStatus.Ok, a.Open(first, fromB, out _, out _));
        Assert.Equal(PeerMessageStatus.Replayed, a.Open(first, fromB, out _, out _));
    }

    [Fact]
    public void A_sender_restarted_with_its_clock_set_back_is_rejected_until_the_clock_catches_up()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        PeerDirectory a = DirectoryOfA(clock);
        UInt128? fromB = AddressBits.SourceKey(B4);
        for (int i = 0; i < 200; i++)
        {
            Assert.Equal(PeerMessageStatus.Ok, a.Open(Encode(DirectoryOfB(clock), "pop-a", PeerMessageType.Query, Flow4), fromB, out _, out _));
            clock.Advance(TimeSpan.FromMicroseconds(1));
        }

        var behind = new FakeTimeProvider(clock.GetUtcNow() - TimeSpan.FromSeconds(1));
        Assert.Equal(PeerMessageStatus.BehindWindow, a.Open(Encode(DirectoryOfB(behind), "pop-a", PeerMessageType.Query, Flow4), fromB, out _, out _));
        clock.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(PeerMessageStatus.Ok, a.Open(Encode(DirectoryOfB(clock), "pop-a", PeerMessageType.Query, Flow4), fromB, out _, out _));
    }

    [Fact]
    public void The_clock_bound_can_be_turned_off()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var unbounded = new PeerDirectory(
            Options("pop-a", A4, null, 1, ("pop-b", B4, null)) with { MaxClockSkew = Timeout.InfiniteTimeSpan }, clock);
        ulong farAhead = (ulong)clock.GetUtcNow().AddDays(1).ToUnixTimeMilliseconds() * 1000;
        byte[] query = Encode(DirectoryOfB(clock), "pop-a", PeerMessageType.Query, Flow4, sequence: farAhead);
        Assert.Equal(PeerMessageStatus.FromFuture, DirectoryOfA(clock).Open(query, null, out _, out _));
        Assert.Equal(PeerMessageStatus.Ok, unbounded.Open(query, null, out _, out _));
    }
}
