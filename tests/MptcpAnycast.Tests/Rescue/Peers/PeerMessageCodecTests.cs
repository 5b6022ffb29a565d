using System.Buffers.Binary;
using System.Net;
using System.Security.Cryptography;
using Microsoft.Extensions.Time.Testing;
using MptcpAnycast.Rescue;
using MptcpAnycast.Rescue.Peers;
using static MptcpAnycast.Tests.Rescue.Peers.PeerKit;

namespace MptcpAnycast.Tests.Rescue.Peers;

public sealed class PeerMessageCodecTests
{
    private static readonly UInt128 SourceB = AddressBits.SourceKey(B4);

    // Enum values as bytes: the enums are internal, and a public test method cannot take them.
    public static TheoryData<bool, byte, byte> Kinds => new()
    {
        { false, (byte)PeerMessageType.Query, (byte)PeerVerdict.None },
        { false, (byte)PeerMessageType.Answer, (byte)PeerVerdict.Owned },
        { true, (byte)PeerMessageType.Query, (byte)PeerVerdict.None },
        { true, (byte)PeerMessageType.Answer, (byte)PeerVerdict.NotOwned },
    };

    [Theory]
    [MemberData(nameof(Kinds))]
    public void A_message_round_trips_through_encode_and_open(bool ipv6, byte typeValue, byte verdictValue)
    {
        var type = (PeerMessageType)typeValue;
        var verdict = (PeerVerdict)verdictValue;
        PeerDirectory a = DirectoryOfA(), b = DirectoryOfB();
        TcpFlow flow = ipv6 ? Flow6 : Flow4;
        byte[] datagram = Encode(b, "pop-a", type, flow, queryId: 0xDEADBEEF, verdict: verdict);

        Assert.Equal(PeerMessageCodec.LengthOf(ipv6, "pop-b".Length), datagram.Length);
        Assert.Equal(ipv6 ? 74 : 50, datagram.Length);
        Assert.Equal(PeerMessageStatus.Ok, a.Open(datagram, SourceB, out PeerMessage message, out PeerState? peer));
        Assert.Equal("pop-b", peer!.Name);
        Assert.Equal(type, message.Type);
        Assert.Equal(verdict, message.Verdict);
        Assert.Equal(0xDEADBEEFu, message.QueryId);
        Assert.Equal(flow, message.Flow.ToTcpFlow());
        Assert.Equal(WireFlow.From(flow), message.Flow);
    }

    [Fact]
    public void The_bytes_are_the_documented_layout()
    {
        // Built by hand from docs/rescue-peer-protocol.md, not by the codec: a change of format fails here.
        byte[] key = Key("pop-a", "pop-b");
        byte[] expected =
        [
            1, 2, 6, 1, 5,                                   // version, answer, IPv6, owned, name length
            0x00, 0x06, 0x3F, 0x1A, 0x2B, 0x3C, 0x4D, 0x5E,  // sequence
            0xCA, 0xFE, 0x00, 0x01,                          // query id
            0xC8, 0x22, 0x20, 0xFB,                          // ports 51234, 8443
            .. IPAddress.Parse("2001:db8:0:7::42").GetAddressBytes(),
            .. IPAddress.Parse("2001:db8:ffff::1").GetAddressBytes(),
            .. "pop-b"u8,
        ];
        expected = [.. expected, .. HMACSHA256.HashData(key, expected).AsSpan(0, 16)];

        byte[] actual = new byte[PeerMessageCodec.MaxLength];
        int length = PeerMessageCodec.Encode(
            actual, "pop-b"u8, new PeerMessage(PeerMessageType.Answer, 0x00063F1A2B3C4D5E, 0xCAFE0001, WireFlow.From(Flow6), PeerVerdict.Owned), key);
        Assert.Equal(Convert.ToHexString(expected), Convert.ToHexString(actual, 0, length));
    }

    [Fact]
    public void Sizes_stay_within_the_bound()
    {
        Assert.Equal(46, PeerMessageCodec.MinLength);
        Assert.Equal(101, PeerMessageCodec.MaxLength);
        Assert.True(PeerMessageCodec.MaxLength <= 128);
        Assert.Equal(PeerMessageCodec.MaxLength, PeerMessageCodec.LengthOf(true, PeerMessageCodec.MaxNameLength));
        Assert.Equal(PeerMessageCodec.MinLength, PeerMessageCodec.LengthOf(false, 1));
    }

    public static TheoryData<string, string> Crafted => new()
    {
        { "truncated below the minimum", nameof(PeerMessageStatus.TooShort) },
        { "IPv6 family on an IPv4-sized message", nameof(PeerMessageStatus.TooShort) },
        { "longer than the maximum", nameof(PeerMessageStatus.TooLong) },
        { "one byte more than its header says", nameof(PeerMessageStatus.TooLong) },
        { "version 2", nameof(PeerMessageStatus.BadVersion) },
        { "version 0", nameof(PeerMessageStatus.BadVersion) },
        { "type 0", nameof(PeerMessageStatus.BadType) },
        { "type 3", nameof(PeerMessageStatus.BadType) },
        { "family 5", nameof(PeerMessageStatus.BadFlow) },
        { "IPv4-mapped address in an IPv6 flow", nameof(PeerMessageStatus.BadFlow) },
        { "query with a verdict", nameof(PeerMessageStatus.BadVerdict) },
        { "answer without a verdict", nameof(PeerMessageStatus.BadVerdict) },
        { "answer with verdict 3", nameof(PeerMessageStatus.BadVerdict) },
        { "name length 0", nameof(PeerMessageStatus.BadName) },
        { "name length 33", nameof(PeerMessageStatus.BadName) },
        { "name with a slash", nameof(PeerMessageStatus.BadName) },
        { "name with a non-ASCII byte", nameof(PeerMessageStatus.BadName) },
        { "name of no peer", nameof(PeerMessageStatus.UnknownPeer) },
        { "the receiver's own name", nameof(PeerMessageStatus.UnknownPeer) },
        { "from another address", nameof(PeerMessageStatus.WrongSource) },
        { "MAC bit flipped", nameof(PeerMessageStatus.BadMac) },
        { "sequence changed, MAC kept", nameof(PeerMessageStatus.BadMac) },
        { "signed with another peer's key", nameof(PeerMessageStatus.BadMac) },
        { "sequence far ahead of the clock", nameof(PeerMessageStatus.FromFuture) },
        { "the same message twice", nameof(PeerMessageStatus.Replayed) },
        { "older than the window", nameof(PeerMessageStatus.BehindWindow) },
    };

    [Theory]
    [MemberData(nameof(Crafted))]
    public void Each_crafted_fault_gets_its_own_status(string fault, string expectedName)
    {
        PeerMessageStatus expected = Enum.Parse<PeerMessageStatus>(expectedName);
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        PeerDirectory a = DirectoryOfA(clock), b = DirectoryOfB(clock);
        byte[] keyAB = Key("pop-a", "pop-b");
        byte[] query4 = Encode(b, "pop-a", PeerMessageType.Query, Flow4);
        byte[] query6 = Encode(b, "pop-a", PeerMessageType.Query, Flow6);
        byte[] answer4 = Encode(b, "pop-a", PeerMessageType.Answer, Flow4);
        UInt128? source = SourceB;

        byte[] datagram = fault switch
        {
            "truncated below the minimum" => query4[..(PeerMessageCodec.MinLength - 1)],
            "IPv6 family on an IPv4-sized message" => Resign(Set(query4, PeerMessageCodec.FamilyOffset, 6), keyAB),
            "longer than the maximum" => [.. query6, .. new byte[PeerMessageCodec.MaxLength - query6.Length + 1]],
            "one byte more than its header says" => [.. query4, 0],
            "version 2" => Resign(Set(query4, 0, 2), keyAB),
            "version 0" => Resign(Set(query4, 0, 0), keyAB),
            "type 0" => Resign(Set(query4, 1, 0), keyAB),
            "type 3" => Resign(Set(query4, 1, 3), keyAB),
            "family 5" => Resign(Set(query4, PeerMessageCodec.FamilyOffset, 5), keyAB),
            "IPv4-mapped address in an IPv6 flow" => Resign(MapClientAddress(query6), keyAB),
            "query with a verdict" => Resign(Set(query4, PeerMessageCodec.VerdictOffset, 1), keyAB),
            "answer without a verdict" => Resign(Set(answer4, PeerMessageCodec.VerdictOffset, 0), keyAB),
            "answer with verdict 3" => Resign(Set(answer4, PeerMessageCodec.VerdictOffset, 3), keyAB),
            "name length 0" => Resign(Set(query4, PeerMessageCodec.NameLengthOffset, 0), keyAB),
            "name length 33" => Resign(Set(query4, PeerMessageCodec.NameLengthOffset, 33), keyAB),
            "name with a slash" => Resign(Set(query4, PeerMessageCodec.AddressesOffset + 8 + 3, (byte)'/'), keyAB),
            "name with a non-ASCII byte" => Resign(Set(query4, PeerMessageCodec.AddressesOffset + 8, 0xC3), keyAB),
            "name of no peer" => Resign(Set(query4, PeerMessageCodec.AddressesOffset + 8 + 4, (byte)'z'), keyAB),
            "the receiver's own name" => Resign(Set(query4, PeerMessageCodec.AddressesOffset + 8 + 4, (byte)'a'), keyAB),
            "from another address" => query4,
            "MAC bit flipped" => Set(query4, query4.Length - 1, (byte)(query4[^1] ^ 0x01)),
            "sequence changed, MAC kept" => Set(query4, PeerMessageCodec.SequenceOffset + 7, (byte)(query4[PeerMessageCodec.SequenceOffset + 7] + 1)),
            "signed with another peer's key" => Resign(query4, Key("pop-a", "pop-c")),
            "sequence far ahead of the clock" => Encode(b, "pop-a", PeerMessageType.Query, Flow4,
                sequence: (ulong)clock.GetUtcNow().AddMinutes(2).ToUnixTimeMilliseconds() * 1000),
            "the same message twice" => query4,
            "older than the window" => query4,
            _ => throw new ArgumentException(fault),
        };

        if (fault == "from another address")
        {
            source = AddressBits.SourceKey(Stranger4);
        }
        else if (fault == "the same message twice")
        {
            Assert.Equal(PeerMessageStatus.Ok, a.Open(datagram, source, out _, out _));
        }
        else if (fault == "older than the window")
        {
            for (int i = 0; i < ReplayWindow.Width; i++)
            {
                Assert.Equal(PeerMessageStatus.Ok, a.Open(Encode(b, "pop-a", PeerMessageType.Query, Flow4), source, out _, out _));
            }
        }

        Assert.Equal(expected, a.Open(datagram, source, out PeerMessage message, out PeerState? peer));
        Assert.Null(peer);
        Assert.Equal(default, message);
    }

    [Fact]
    public void A_rejected_forgery_does_not_use_up_the_genuine_sequence_number()
    {
        PeerDirectory a = DirectoryOfA(), b = DirectoryOfB();
        byte[] genuine = Encode(b, "pop-a", PeerMessageType.Query, Flow4);
        byte[] forged = Resign(genuine, Key("pop-a", "pop-c")); // same sequence, wrong key
        byte[] spoofed = genuine;

        Assert.Equal(PeerMessageStatus.BadMac, a.Open(forged, SourceB, out _, out _));
        Assert.Equal(PeerMessageStatus.WrongSource, a.Open(spoofed, AddressBits.SourceKey(Stranger4), out _, out _));
        Assert.Equal(PeerMessageStatus.Ok, a.Open(genuine, SourceB, out _, out _));
        Assert.Equal(PeerMessageStatus.Replayed, a.Open(genuine, SourceB, out _, out _));
    }

    [Fact]
    public void Random_macs_and_every_single_bit_flip_are_rejected()
    {
        PeerDirectory a = DirectoryOfA(), b = DirectoryOfB();
        byte[] genuine = Encode(b, "pop-a", PeerMessageType.Answer, Flow6, verdict: PeerVerdict.NotOwned);
        var random = new Random(20261201);
        for (int i = 0; i < 2000; i++)
        {
            byte[] forged = (byte[])genuine.Clone();
            random.NextBytes(forged.AsSpan(forged.Length - PeerMessageCodec.MacLength));
            Assert.Equal(PeerMessageStatus.BadMac, a.Open(forged, SourceB, out _, out _));
        }

        for (int bit = 0; bit < genuine.Length * 8; bit++)
        {
            byte[] flipped = (byte[])genuine.Clone();
            flipped[bit / 8] ^= (byte)(1 << (bit % 8));
            Assert.NotEqual(PeerMessageStatus.Ok, a.Open(flipped, SourceB, out _, out _));
        }

        Assert.Equal(PeerMessageStatus.Ok, a.Open(genuine, SourceB, out _, out _));
    }

    [Fact]
    public void An_ipv6_source_is_checked_against_the_peers_ipv6_address()
    {
        PeerDirectory a = DirectoryOfA(), b = DirectoryOfB();
        byte[] query = Encode(b, "pop-a", PeerMessageType.Query, Flow4);
        Assert.Equal(PeerMessageStatus.WrongSource, a.Open(query, AddressBits.SourceKey(IPAddress.Parse("::2")), out _, out _));
        Assert.Equal(PeerMessageStatus.WrongSource, a.Open(query, AddressBits.SourceKey(IPAddress.Parse("::ffff:127.0.0.3")), out _, out _));
        Assert.Equal(PeerMessageStatus.Ok, a.Open(query, AddressBits.SourceKey(IPAddress.IPv6Loopback), out _, out _));
    }

    [Fact]
    public void Names_are_letters_digits_dash_dot_underscore_up_to_32()
    {
        Assert.True(PeerMessageCodec.IsValidName("pop-fra1.edge_2"));
        Assert.True(PeerMessageCodec.IsValidName(new string('x', 32)));
        Assert.False(PeerMessageCodec.IsValidName(new string('x', 33)));
        Assert.False(PeerMessageCodec.IsValidName(""));
        Assert.False(PeerMessageCodec.IsValidName((string?)null));
        Assert.False(PeerMessageCodec.IsValidName("pop a"));
        Assert.False(PeerMessageCodec.IsValidName("popé"));
        Assert.False(PeerMessageCodec.IsValidName("pop/a"));
    }

    [Fact]
    public void Encoding_rejects_what_the_decoder_would_reject()
    {
        byte[] buffer = new byte[PeerMessageCodec.MaxLength];
        byte[] key = Key("pop-a", "pop-b");
        var query = new PeerMessage(PeerMessageType.Query, 1, 1, WireFlow.From(Flow4), PeerVerdict.None);
        Assert.Throws<ArgumentException>(() => PeerMessageCodec.Encode(buffer, "bad name"u8, query, key));
        Assert.Throws<ArgumentException>(() => PeerMessageCodec.Encode(buffer, "pop-b"u8, query with { Verdict = PeerVerdict.Owned }, key));
        Assert.Throws<ArgumentException>(() => PeerMessageCodec.Encode(buffer, "pop-b"u8, query with { Type = PeerMessageType.Answer }, key));
        Assert.Throws<ArgumentException>(() => PeerMessageCodec.Encode(buffer.AsSpan(0, 49), "pop-b"u8, query, key));
        var mapped = new WireFlow(true, AddressBits.SourceKey(IPAddress.Parse("10.0.0.1")), 1, 1, 2);
        Assert.Throws<ArgumentException>(() => PeerMessageCodec.Encode(buffer, "pop-b"u8, query with { Flow = mapped }, key));
    }

    [Fact]
    public void Configuration_errors_throw_when_the_directory_is_made()
    {
        PeerChannelOptions good = Options("pop-a", A4, null, 1, ("pop-b", B4, null));
        Assert.Throws<ArgumentException>(() => new PeerDirectory(good with { LocalName = "pop a" }, TimeProvider.System));
        Assert.Throws<ArgumentException>(() => new PeerDirectory(good with { LocalIPv4 = null }, TimeProvider.System));
        Assert.Throws<ArgumentException>(() => new PeerDirectory(good with { LocalIPv4 = IPAddress.IPv6Loopback }, TimeProvider.System));
        Assert.Throws<ArgumentException>(() => new PeerDirectory(good with { Peers = [.. good.Peers, .. good.Peers] }, TimeProvider.System));
        Assert.Throws<ArgumentException>(() => new PeerDirectory(good with { Peers = [Peer("pop-a", "pop-a", B4)] }, TimeProvider.System));
        Assert.Throws<ArgumentException>(() => new PeerDirectory(good with { Peers = [new RescuePeer("pop-b", B4, null, new byte[15])] }, TimeProvider.System));
        Assert.Throws<ArgumentException>(() => new PeerDirectory(good with { Peers = [Peer("pop-a", "pop-b", null, IPAddress.IPv6Loopback)] }, TimeProvider.System));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PeerDirectory(good with { Port = 0 }, TimeProvider.System)); // no peer port
        Assert.NotNull(new PeerDirectory(good with { Port = 0, PeerPort = 5 }, TimeProvider.System));
    }

    [Fact]
    public void Encoding_and_opening_allocate_nothing()
    {
        PeerDirectory a = DirectoryOfA(), b = DirectoryOfB();
        Assert.True(b.TryGet("pop-a", out PeerState? toA));
        byte[] buffer = new byte[PeerMessageCodec.MaxLength];
        UInt128? source = SourceB;
        var answer = new PeerMessage(PeerMessageType.Answer, 0, 9, WireFlow.From(Flow6), PeerVerdict.Owned);
        int RoundTrip()
        {
            int length = PeerMessageCodec.Encode(buffer, b.LocalNameBytes, answer with { Sequence = toA.NextSequence() }, toA.Key);
            return a.Open(buffer.AsSpan(0, length), source, out PeerMessage m, out _) == PeerMessageStatus.Ok ? (int)m.QueryId : -1;
        }

        Assert.Equal(9, RoundTrip()); // warm up
        long before = GC.GetAllocatedBytesForCurrentThread();
        int sum = 0;
        for (int i = 0; i < 1000; i++)
        {
            sum += RoundTrip();
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(9000, sum);
    }

    private static byte[] Set(byte[] datagram, int offset, byte value)
    {
        byte[] copy = (byte[])datagram.Clone();
        copy[offset] = value;
        return copy;
    }

    private static byte[] MapClientAddress(byte[] query6)
    {
        byte[] copy = (byte[])query6.Clone();
        Span<byte> client = copy.AsSpan(PeerMessageCodec.AddressesOffset, 16);
        client.Clear();
        BinaryPrimitives.WriteUInt16BigEndian(client[10..], 0xFFFF);
        new byte[] { 198, 51, 100, 7 }.CopyTo(client[12..]);
        return copy;
    }
}
