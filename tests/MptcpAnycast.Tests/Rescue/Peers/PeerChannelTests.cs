using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Time.Testing;
using MptcpAnycast.Rescue;
using MptcpAnycast.Rescue.Peers;
using static MptcpAnycast.Tests.Rescue.Peers.PeerKit;

namespace MptcpAnycast.Tests.Rescue.Peers;

/// <summary>Channels on loopback (127.0.0.1/.2/.3 on one port, or ::1 on two ports) asking each other about flows.</summary>
public sealed class PeerChannelTests
{
    private static readonly TimeSpan Short = TimeSpan.FromMilliseconds(300);
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Two_pops_on_ipv4_ask_each_other_and_get_the_truth()
    {
        int port = FreePort(A4, B4);
        var ownedByA = new ConcurrentQueue<TcpFlow>();
        await using var a = new PeerChannel(Options("pop-a", A4, null, port, ("pop-b", B4, null)), flow =>
        {
            ownedByA.Enqueue(flow);
            return flow == Flow4 || flow == Flow6;
        });
        await using var b = new PeerChannel(Options("pop-b", B4, null, port, ("pop-a", A4, null)), _ => false);
        RescuePeer peerA = b.Peers.Single();

        Assert.Equal(new PeerAnswer(peerA, PeerAnswerKind.Owned), await b.QueryAsync(peerA, Flow4, Long).WithTimeout());
        Assert.Equal(new PeerAnswer(peerA, PeerAnswerKind.Owned), await b.QueryAsync(peerA, Flow6, Long).WithTimeout());
        var other = new TcpFlow(Flow4.ClientAddress, Flow4.ClientPort + 1, Flow4.ServerAddress, Flow4.ServerPort);
        Assert.Equal(new PeerAnswer(peerA, PeerAnswerKind.NotOwned), await b.QueryAsync(peerA, other, Long).WithTimeout());
        Assert.Equal(PeerAnswerKind.NotOwned, (await a.QueryAsync(a.Peers.Single(), Flow4, Long).WithTimeout()).Kind);

        Assert.Equal(new[] { Flow4, Flow6, other }, ownedByA);
        // Each side counts an answer once its send returns, which may be after the asker has read it.
        await Eventually.TrueAsync(() => a.Statistics.AnswersSent >= 3 && b.Statistics.AnswersSent >= 1, "every answer counted");
        PeerChannelStatistics sa = a.Statistics, sb = b.Statistics;
        Assert.Equal((3, 3, 1, 1, 0), (sa.QueriesReceived, sa.AnswersSent, sa.QueriesSent, sa.AnswersNotOwned, sa.RejectedTotal));
        Assert.Equal((3, 2, 1, 1, 1, 0), (sb.QueriesSent, sb.AnswersOwned, sb.AnswersNotOwned, sb.QueriesReceived, sb.AnswersSent, sb.RejectedTotal));
        Assert.Equal(0, a.PendingCount + b.PendingCount);
        Assert.Equal(new IPEndPoint(A4, port), a.LocalEndPoints.Single());
    }

    [Fact]
    public async Task Answering_a_query_allocates_only_the_flow_handed_to_the_handler()
    {
        int port = FreePort(A4, B4);
        var allocated = new List<long>();
        await using var a = new PeerChannel(Options("pop-a", A4, null, port, ("pop-b", B4, null)), flow =>
        {
            allocated.Add(GC.GetAllocatedBytesForCurrentThread()); // on the receive thread: one sample per query handled
            return true;
        });
        await using var b = new PeerChannel(Options("pop-b", B4, null, port, ("pop-a", A4, null)), _ => false);
        for (int i = 0; i < 200; i++)
        {
            Assert.Equal(PeerAnswerKind.Owned, (await b.QueryAsync(b.Peers.Single(), Flow4, Long).WithTimeout()).Kind);
        }

        // From one handler call to the next: the answer's encoding and send, the next receive, its decoding and the
        // TcpFlow for the handler (two IPv4 IPAddress objects of 40 bytes).
        long[] perQuery = [.. allocated.Skip(100).Zip(allocated.Skip(101), (x, y) => y - x).Order()];
        long median = perQuery[perQuery.Length / 2];
        Assert.True(median <= 2 * 40, $"{median} bytes allocated per query on the receive thread");
    }

    [Fact]
    public async Task Two_pops_on_ipv6_loopback_with_different_ports()
    {
        int portA = FreePort(IPAddress.IPv6Loopback), portB = FreePort(IPAddress.IPv6Loopback);
        PeerChannelOptions optionsA = Options("pop-a", null, IPAddress.IPv6Loopback, portA, ("pop-b", null, IPAddress.IPv6Loopback)) with { PeerPort = portB };
        PeerChannelOptions optionsB = Options("pop-b", null, IPAddress.IPv6Loopback, portB, ("pop-a", null, IPAddress.IPv6Loopback)) with { PeerPort = portA };
        await using var a = new PeerChannel(optionsA, flow => flow == Flow6);
        await using var b = new PeerChannel(optionsB, flow => flow == Flow4);

        Assert.Equal(PeerAnswerKind.Owned, (await b.QueryAsync(b.Peers.Single(), Flow6, Long).WithTimeout()).Kind);
        Assert.Equal(PeerAnswerKind.NotOwned, (await b.QueryAsync(b.Peers.Single(), Flow4, Long).WithTimeout()).Kind);
        Assert.Equal(PeerAnswerKind.Owned, (await a.QueryAsync(a.Peers.Single(), Flow4, Long).WithTimeout()).Kind);
        await Eventually.TrueAsync(() => a.Statistics.AnswersSent + b.Statistics.AnswersSent >= 3, "three answers counted");
        Assert.Equal(3, a.Statistics.AnswersSent + b.Statistics.AnswersSent);
    }

    [Fact]
    public async Task Asking_everyone_returns_the_owner_without_waiting_for_a_silent_peer()
    {
        int port = FreePort(A4, B4, C4);
        (string, IPAddress?, IPAddress?) peerB = ("pop-b", B4, null), peerC = ("pop-c", C4, null), silent = ("pop-d", IPAddress.Parse("127.0.0.4"), null);
        await using var a = new PeerChannel(Options("pop-a", A4, null, port, peerB, peerC, silent), _ => false);
        await using var b = new PeerChannel(Options("pop-b", B4, null, port, ("pop-a", A4, null)), flow => flow == Flow4);
        await using var c = new PeerChannel(Options("pop-c", C4, null, port, ("pop-a", A4, null)), _ => false);

        PeerLookupResult found = await a.FindOwnerAsync(a.Peers, Flow4, Long).WithTimeout(TimeSpan.FromSeconds(5), "the owner's answer");
        Assert.Equal("pop-b", found.Owner?.Name);
        Assert.Equal(3, found.Asked);
        Assert.Equal(0, a.PendingCount);

        PeerLookupResult nobody = await a.FindOwnerAsync(a.Peers, Flow6, TimeSpan.FromSeconds(1)).WithTimeout(); // the silent peer makes it last that long
        Assert.Equal(new PeerLookupResult(null, 3, 2, 1, 0, 0), nobody);
        Assert.Equal(0, a.PendingCount);
        Assert.Equal(1, a.Statistics.QueriesTimedOut);
    }

    [Fact]
    public async Task A_peer_that_never_answers_times_out_leaves_nothing_pending_and_its_late_answer_is_unmatched()
    {
        int port = FreePort(A4, B4);
        await using var a = new PeerChannel(Options("pop-a", A4, null, port, ("pop-b", B4, null)), _ => false);
        using Socket silentB = RawSocket(B4, port);

        PeerAnswer answer = await a.QueryAsync(a.Peers.Single(), Flow4, Short).WithTimeout();
        Assert.Equal(PeerAnswerKind.TimedOut, answer.Kind);
        Assert.Equal(0, a.PendingCount);
        Assert.Equal(1, a.Statistics.QueriesTimedOut);

        // The query did go out; answering it now, correctly signed, is too late.
        byte[] received = new byte[256];
        int length = await silentB.ReceiveAsync(received, SocketFlags.None).WithTimeout(what: "the query at the silent peer");
        Assert.Equal(PeerMessageStatus.Ok, PeerMessageCodec.Read(received.AsSpan(0, length), out PeerMessage query, out _));
        PeerDirectory b = DirectoryOfB();
        await silentB.SendToAsync(Encode(b, "pop-a", PeerMessageType.Answer, Flow4, query.QueryId), new IPEndPoint(A4, port)).WithTimeout();
        await Eventually.TrueAsync(() => a.Statistics.AnswersUnmatched == 1, "the late answer counted as unmatched");
        Assert.Equal(0, a.Statistics.AnswersOwned);
    }

    [Fact]
    public async Task An_answer_about_another_flow_or_from_another_peer_does_not_complete_the_query()
    {
        int port = FreePort(A4, B4, C4);
        await using var a = new PeerChannel(Options("pop-a", A4, null, port, ("pop-b", B4, null), ("pop-c", C4, null)), _ => false);
        using Socket fakeB = RawSocket(B4, port);
        using Socket fakeC = RawSocket(C4, port);
        PeerDirectory b = DirectoryOfB();
        var c = new PeerDirectory(Options("pop-c", C4, null, 1, ("pop-a", A4, null)), TimeProvider.System);

        ValueTask<PeerAnswer> pending = a.QueryAsync(a.Peers.Single(p => p.Name == "pop-b"), Flow4, Long);
        byte[] received = new byte[256];
        int length = await fakeB.ReceiveAsync(received, SocketFlags.None).WithTimeout();
        Assert.Equal(PeerMessageStatus.Ok, PeerMessageCodec.Read(received.AsSpan(0, length), out PeerMessage query, out _));

        var target = new IPEndPoint(A4, port);
        await fakeB.SendToAsync(Encode(b, "pop-a", PeerMessageType.Answer, Flow6, query.QueryId), target);          // wrong flow
        await fakeC.SendToAsync(Encode(c, "pop-a", PeerMessageType.Answer, Flow4, query.QueryId), target);          // wrong peer
        await fakeB.SendToAsync(Encode(b, "pop-a", PeerMessageType.Answer, Flow4, query.QueryId + 1), target);      // wrong id
        await Eventually.TrueAsync(() => a.Statistics.AnswersUnmatched == 3, "three mismatched answers");
        Assert.False(pending.IsCompleted);

        await fakeB.SendToAsync(Encode(b, "pop-a", PeerMessageType.Answer, Flow4, query.QueryId, PeerVerdict.Owned), target);
        Assert.Equal(PeerAnswerKind.Owned, (await pending.WithTimeout()).Kind);
    }

    [Fact]
    public async Task A_datagram_from_an_address_other_than_the_named_peers_is_dropped_and_counted()
    {
        int port = FreePort(A4, B4);
        int calls = 0;
        await using var a = new PeerChannel(Options("pop-a", A4, null, port, ("pop-b", B4, null)), _ => Interlocked.Increment(ref calls) > 0);
        using Socket impostor = RawSocket(C4);
        byte[] query = Encode(DirectoryOfB(), "pop-a", PeerMessageType.Query, Flow4); // correctly signed as pop-b

        await impostor.SendToAsync(query, new IPEndPoint(A4, port));
        await Eventually.TrueAsync(() => a.Statistics.Rejected(PeerMessageStatus.WrongSource) == 1, "the wrong source counted");
        Assert.Equal(0, calls);
        Assert.Equal(0, a.Statistics.AnswersSent);
        impostor.ReceiveTimeout = 200;
        Assert.Throws<SocketException>(() => impostor.Receive(new byte[256])); // nothing reflected to the impostor

        // The genuine peer can still use that sequence number: the impostor's copy did not spend it.
        using Socket realB = RawSocket(B4);
        await realB.SendToAsync(query, new IPEndPoint(A4, port));
        await Eventually.TrueAsync(() => a.Statistics.AnswersSent == 1, "the genuine query answered");
    }

    [Fact]
    public async Task Queries_above_a_peers_rate_are_dropped_and_counted()
    {
        int port = FreePort(A4, B4);
        var frozen = new FakeTimeProvider(DateTimeOffset.UtcNow); // A's buckets never refill
        PeerChannelOptions optionsA = Options("pop-a", A4, null, port, ("pop-b", B4, null)) with { InboundQueriesPerPeerPerSecond = 5, InboundQueryBurst = 3 };
        await using var a = new PeerChannel(optionsA, _ => true, frozen);
        await using var b = new PeerChannel(Options("pop-b", B4, null, port, ("pop-a", A4, null)), _ => false);
        RescuePeer peerA = b.Peers.Single();

        PeerAnswer[] answers = await Task.WhenAll(Enumerable.Range(0, 10).Select(i =>
            b.QueryAsync(peerA, new TcpFlow(Flow4.ClientAddress, 30000 + i, Flow4.ServerAddress, 443), TimeSpan.FromSeconds(1)).AsTask())).WithTimeout();

        Assert.Equal(3, answers.Count(x => x.Kind == PeerAnswerKind.Owned));
        Assert.Equal(7, answers.Count(x => x.Kind == PeerAnswerKind.TimedOut));
        Assert.Equal((3, 7, 10), (a.Statistics.QueriesReceived, a.Statistics.InboundRateLimited, a.Statistics.DatagramsReceived));
        Assert.Equal(7, b.Statistics.QueriesTimedOut);
    }

    [Fact]
    public async Task Queries_above_this_pops_rate_are_not_sent()
    {
        int port = FreePort(A4, B4);
        await using var a = new PeerChannel(Options("pop-a", A4, null, port, ("pop-b", B4, null)), _ => true);
        var frozen = new FakeTimeProvider(DateTimeOffset.UtcNow);
        PeerChannelOptions optionsB = Options("pop-b", B4, null, port, ("pop-a", A4, null)) with { OutboundQueriesPerSecond = 1, OutboundQueryBurst = 2 };
        await using var b = new PeerChannel(optionsB, _ => false, frozen);
        RescuePeer peerA = b.Peers.Single();

        Assert.Equal(PeerAnswerKind.Owned, (await b.QueryAsync(peerA, Flow4, Long).WithTimeout()).Kind);
        Assert.Equal(PeerAnswerKind.Owned, (await b.QueryAsync(peerA, Flow6, Long).WithTimeout()).Kind);
        Assert.Equal(PeerAnswerKind.RateLimited, (await b.QueryAsync(peerA, Flow4, Long).WithTimeout()).Kind);
        Assert.Equal((2, 1), (b.Statistics.QueriesSent, b.Statistics.OutboundRateLimited));
        Assert.Equal(0, b.PendingCount);
        frozen.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(PeerAnswerKind.Owned, (await b.QueryAsync(peerA, Flow4, Long).WithTimeout()).Kind);
    }

    [Fact]
    public async Task A_restarted_pop_is_answered_at_once()
    {
        int port = FreePort(A4, B4);
        await using var a = new PeerChannel(Options("pop-a", A4, null, port, ("pop-b", B4, null)), _ => true);
        PeerChannelOptions optionsB = Options("pop-b", B4, null, port, ("pop-a", A4, null));
        for (int run = 0; run < 3; run++)
        {
            await using var b = new PeerChannel(optionsB, _ => false);
            for (int i = 0; i < 5; i++)
            {
                Assert.Equal(PeerAnswerKind.Owned, (await b.QueryAsync(b.Peers.Single(), Flow4, Long).WithTimeout()).Kind);
            }
        }

        await Eventually.TrueAsync(() => a.Statistics.AnswersSent >= 15, "every answer counted");
        Assert.Equal(15, a.Statistics.AnswersSent);
        Assert.Equal(0, a.Statistics.RejectedTotal);
    }

    [Fact]
    public async Task A_throwing_handler_costs_one_answer_not_the_channel()
    {
        int port = FreePort(A4, B4);
        await using var a = new PeerChannel(
            Options("pop-a", A4, null, port, ("pop-b", B4, null)), flow => flow == Flow6 ? throw new InvalidOperationException("lookup failed") : true);
        await using var b = new PeerChannel(Options("pop-b", B4, null, port, ("pop-a", A4, null)), _ => false);

        Assert.Equal(PeerAnswerKind.TimedOut, (await b.QueryAsync(b.Peers.Single(), Flow6, Short).WithTimeout()).Kind);
        Assert.Equal(PeerAnswerKind.Owned, (await b.QueryAsync(b.Peers.Single(), Flow4, Long).WithTimeout()).Kind);
        Assert.Equal((1, 0), (a.Statistics.HandlerFailures, a.Statistics.Faults));
    }

    [Fact]
    public async Task Oversized_and_empty_datagrams_are_counted_as_such()
    {
        int port = FreePort(A4, B4);
        await using var a = new PeerChannel(Options("pop-a", A4, null, port, ("pop-b", B4, null)), _ => true);
        using Socket fromB = RawSocket(B4);
        var target = new IPEndPoint(A4, port);
        byte[] valid = Encode(DirectoryOfB(), "pop-a", PeerMessageType.Query, Flow4);

        await fromB.SendToAsync(new byte[60_000], target);
        await fromB.SendToAsync((byte[])[.. valid, .. new byte[PeerMessageCodec.MaxLength]], target);
        await fromB.SendToAsync(Array.Empty<byte>(), target);
        await fromB.SendToAsync(valid[..10], target);
        await Eventually.TrueAsync(() => a.Statistics.DatagramsReceived == 4, "four datagrams");
        Assert.Equal((2, 2), (a.Statistics.Rejected(PeerMessageStatus.TooLong), a.Statistics.Rejected(PeerMessageStatus.TooShort)));
    }

    [Fact]
    public async Task Disposing_ends_pending_lookups_and_the_receive_threads()
    {
        int port = FreePort(A4, B4);
        var a = new PeerChannel(Options("pop-a", A4, null, port, ("pop-b", B4, null)), _ => true);
        ValueTask<PeerAnswer> pending = a.QueryAsync(a.Peers.Single(), Flow4, Timeout.InfiniteTimeSpan);
        await Eventually.TrueAsync(() => a.Statistics.QueriesSent == 1, "the query sent");
        await a.DisposeAsync();

        await Assert.ThrowsAsync<ObjectDisposedException>(() => pending.WithTimeout());
        Assert.Equal(0, a.PendingCount);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => a.QueryAsync(new RescuePeer("pop-b", B4, null, Key("pop-a", "pop-b")), Flow4, Long).AsTask());

        // The port is free again: the sockets are closed.
        await using var again = new PeerChannel(Options("pop-a", A4, null, port, ("pop-b", B4, null)), _ => true);
    }

    [Fact]
    public async Task Cancelling_a_lookup_throws_and_leaves_nothing_pending()
    {
        int port = FreePort(A4, B4);
        await using var a = new PeerChannel(Options("pop-a", A4, null, port, ("pop-b", B4, null)), _ => true);
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => a.QueryAsync(a.Peers.Single(), Flow4, Long, cancel.Token).AsTask().WithTimeout());
        Assert.Equal(0, a.PendingCount);
        await Assert.ThrowsAsync<ArgumentException>(() => a.FindOwnerAsync([Peer("pop-a", "pop-x", B4)], Flow4, Long).AsTask());
    }
}
