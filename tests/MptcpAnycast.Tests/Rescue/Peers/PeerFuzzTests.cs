using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Rescue;
using MptcpAnycast.Rescue.Peers;
using Xunit.Abstractions;
using static MptcpAnycast.Tests.Rescue.Peers.PeerKit;

namespace MptcpAnycast.Tests.Rescue.Peers;

/// <summary>
/// Random and mutated datagrams into the decoder and into a live channel. The only acceptable outcome of each is one
/// typed status, counted once; an exception, a miscount or a hang fails. Fixed seeds, printed: a failure names its
/// iteration and input.
/// </summary>
public sealed class PeerFuzzTests(ITestOutputHelper output)
{
    private const int DecoderSeed = 20261201;
    private const int ChannelSeed = 20261202;
    private const int DecoderIterations = 200_000;
    private const int ChannelIterations = 100_000;

    [Fact]
    public void The_decoder_returns_a_typed_status_for_every_input_and_accepts_only_what_a_key_holder_signed()
    {
        output.WriteLine($"seed {DecoderSeed}, {DecoderIterations} inputs");
        PeerDirectory a = DirectoryOfA();
        var fuzzer = new PeerFuzzer(DecoderSeed);
        int[] counts = new int[Enum.GetValues<PeerMessageStatus>().Length];
        foreach ((byte[] datagram, IPAddress source) in fuzzer.Seeds())
        {
            counts[(int)a.Open(datagram, AddressBits.SourceKey(source), out _, out _)]++;
        }

        Assert.Equal((6, 2), (counts[(int)PeerMessageStatus.Ok], counts[(int)PeerMessageStatus.UnknownPeer]));
        int inputs = counts.Sum();
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < DecoderIterations; i++)
        {
            FuzzInput input = fuzzer.Next();
            PeerMessageStatus status;
            try
            {
                status = a.Open(input.Datagram, AddressBits.SourceKey(input.Source), out PeerMessage message, out PeerState? peer);
                Assert.Equal(status == PeerMessageStatus.Ok, peer is not null);
            }
            catch (Exception ex)
            {
                throw new InvalidOperationException($"iteration {i} ({input.Kind}): {ex.GetType().Name} for {Convert.ToHexString(input.Datagram)}", ex);
            }

            Assert.True(Enum.IsDefined(status), $"iteration {i}: undefined status {(int)status}");
            if (input.Kind == FuzzKind.Fresh)
            {
                Assert.True(status == PeerMessageStatus.Ok, $"iteration {i}: a fresh valid message was {status}");
            }
            else if (input.Kind is FuzzKind.Mutant or FuzzKind.Random)
            {
                Assert.True(status != PeerMessageStatus.Ok, $"iteration {i} ({input.Kind}): accepted without the key: {Convert.ToHexString(input.Datagram)}");
            }

            counts[(int)status]++;
            inputs++;
        }

        output.WriteLine($"{clock.Elapsed.TotalMicroseconds / DecoderIterations:0.00} µs per input (mutation included)");
        foreach (PeerMessageStatus status in Enum.GetValues<PeerMessageStatus>())
        {
            output.WriteLine($"{status,-14} {counts[(int)status],8}");
            Assert.True(counts[(int)status] > 0, $"no input produced {status}: the mutations do not reach that check");
        }

        Assert.Equal(inputs, counts.Sum());
        Assert.Equal(DecoderIterations + fuzzer.Seeds().Count, inputs);
    }

    [Fact]
    public async Task A_live_channel_counts_every_fuzzed_datagram_once_and_still_answers_afterwards()
    {
        output.WriteLine($"seed {ChannelSeed}, {ChannelIterations} datagrams");
        int port = FreePort(A4, B4, C4);
        PeerChannelOptions optionsA = Options("pop-a", A4, null, port, ("pop-b", B4, null), ("pop-c", C4, null));
        await using var a = new PeerChannel(optionsA, flow => flow == Flow4);

        // The same checks run beside the channel on the same datagrams, in the same order: the channel must count
        // exactly what they decide.
        var shadow = new PeerDirectory(optionsA, TimeProvider.System);
        int[] expected = new int[Enum.GetValues<PeerMessageStatus>().Length];
        var target = new IPEndPoint(A4, port);
        int sent = 0;
        var clock = Stopwatch.StartNew();
        using (Socket fromB = RawSocket(B4), fromC = RawSocket(C4), fromStranger = RawSocket(Stranger4))
        {
            var fuzzer = new PeerFuzzer(ChannelSeed);
            foreach (FuzzInput input in fuzzer.Seeds().Select(s => new FuzzInput(s.Datagram, s.Source, FuzzKind.Fresh))
                .Concat(Enumerable.Range(0, ChannelIterations).Select(_ => fuzzer.Next())))
            {
                expected[(int)shadow.Open(input.Datagram, AddressBits.SourceKey(input.Source), out _, out _)]++;
                Socket socket = input.Source.Equals(B4) ? fromB : input.Source.Equals(C4) ? fromC : fromStranger;
                socket.SendTo(input.Datagram, target);
                if (++sent % 64 == 0)
                {
                    // A socket's receive buffer holds a few hundred datagrams; waiting keeps the kernel from dropping any.
                    WaitForReceived(a, sent);
                }
            }

            WaitForReceived(a, sent);
        }

        output.WriteLine($"{clock.Elapsed.TotalMicroseconds / sent:0.00} µs per datagram (send, wait, receive, decode)");
        PeerChannelStatistics stats = a.Statistics;
        output.WriteLine(stats.ToString());
        Assert.Equal(sent, stats.DatagramsReceived);
        Assert.Equal((0, 0), (stats.Faults, stats.ReceiveErrors));
        foreach (PeerMessageStatus status in Enum.GetValues<PeerMessageStatus>().Where(s => s != PeerMessageStatus.Ok))
        {
            Assert.True(expected[(int)status] == stats.Rejected(status), $"{status}: the channel counted {stats.Rejected(status)}, the decoder decided {expected[(int)status]}");
        }

        long accepted = stats.QueriesReceived + stats.InboundRateLimited + stats.AnswersOwned + stats.AnswersNotOwned + stats.AnswersUnmatched;
        Assert.Equal(expected[(int)PeerMessageStatus.Ok], accepted);
        Assert.Equal(stats.DatagramsReceived, stats.RejectedTotal + accepted + stats.Faults);
        Assert.Equal(stats.QueriesReceived, stats.AnswersSent + stats.AnswerSendFailures + stats.HandlerFailures);
        Assert.True(stats.QueriesReceived > 1000, $"only {stats.QueriesReceived} queries answered: the valid share is too small");

        // Still serving: pop-c comes up for real (a restarted sender, after the fuzzer spoke as it) and asks.
        await using var c = new PeerChannel(Options("pop-c", C4, null, port, ("pop-a", A4, null)), _ => false);
        Assert.Equal(PeerAnswerKind.Owned, (await c.QueryAsync(c.Peers.Single(), Flow4, TimeSpan.FromSeconds(10)).WithTimeout()).Kind);
        Assert.Equal(PeerAnswerKind.NotOwned, (await a.QueryAsync(a.Peers.Single(p => p.Name == "pop-c"), Flow4, TimeSpan.FromSeconds(10)).WithTimeout()).Kind);
    }

    private static void WaitForReceived(PeerChannel channel, int count)
    {
        var deadline = Stopwatch.StartNew();
        var spin = new SpinWait();
        while (channel.Statistics.DatagramsReceived < count)
        {
            if (deadline.Elapsed > TimeSpan.FromSeconds(15))
            {
                Assert.Fail($"the channel received {channel.Statistics.DatagramsReceived} of {count} datagrams");
            }

            spin.SpinOnce();
        }
    }
}

internal enum FuzzKind
{
    /// <summary>A valid message with a new sequence number, from pop-c: must be accepted.</summary>
    Fresh,

    /// <summary>A valid message changed without re-signing: must never be accepted.</summary>
    Mutant,

    /// <summary>A mutant signed again with pop-b's key, as a buggy key holder would: anything may happen.</summary>
    Resigned,

    /// <summary>Random bytes.</summary>
    Random,
}

internal readonly record struct FuzzInput(byte[] Datagram, IPAddress Source, FuzzKind Kind);

/// <summary>
/// Makes the fuzz inputs: valid messages of pop-b (the corpus) mutated by bit flips, random bytes, truncation,
/// extension, insertion, deletion, boundary values in the header fields and splices, some signed again; random
/// datagrams; fresh valid messages of pop-c (kept apart so that the re-signed mutants, which may move pop-b's replay
/// window, cannot reject them); a share from an address that is no peer's.
/// </summary>
internal sealed class PeerFuzzer
{
    private static readonly IPAddress[] ClientAddresses = [IPAddress.Parse("198.51.100.7"), IPAddress.Parse("2001:db8::7")];
    private static readonly byte[] BoundaryValues = [0, 1, 2, 3, 4, 5, 6, 7, 31, 32, 33, 0x7F, 0x80, 0xFF];
    private readonly Random _random;
    private readonly List<(byte[] Datagram, IPAddress Source)> _seeds = [];
    private readonly byte[] _keyB = Key("pop-a", "pop-b");
    private readonly PeerDirectory _c = new(Options("pop-c", C4, null, 1, ("pop-a", A4, null)), TimeProvider.System);

    public PeerFuzzer(int seed)
    {
        _random = new Random(seed);
        PeerDirectory b = DirectoryOfB();
        foreach (TcpFlow flow in new[] { Flow4, Flow6 })
        {
            _seeds.Add((Encode(b, "pop-a", PeerMessageType.Query, flow, queryId: 1), B4));
            _seeds.Add((Encode(b, "pop-a", PeerMessageType.Answer, flow, queryId: uint.MaxValue, verdict: PeerVerdict.Owned), B4));
            _seeds.Add((Encode(b, "pop-a", PeerMessageType.Answer, flow, queryId: 0x01020304, verdict: PeerVerdict.NotOwned), B4));
        }

        // Names the receiver does not know, of the shortest and longest lengths, for the name checks.
        foreach (string name in new[] { "x", new string('q', PeerMessageCodec.MaxNameLength) })
        {
            byte[] buffer = new byte[PeerMessageCodec.MaxLength];
            int length = PeerMessageCodec.Encode(
                buffer, System.Text.Encoding.ASCII.GetBytes(name), new PeerMessage(PeerMessageType.Query, 5, 5, WireFlow.From(Flow6), PeerVerdict.None), _keyB);
            _seeds.Add((buffer[..length], B4));
        }
    }

    /// <summary>The corpus: sent once before the fuzzing, so that an unchanged copy later is a replay.</summary>
    public IReadOnlyList<(byte[] Datagram, IPAddress Source)> Seeds() => _seeds;

    public FuzzInput Next()
    {
        IPAddress source = _random.Next(20) == 0 ? Stranger4 : B4;
        int dice = _random.Next(100);
        if (dice < 10)
        {
            bool ipv6 = _random.Next(2) == 0;
            var flow = new TcpFlow(ClientAddresses[ipv6 ? 1 : 0], _random.Next(1, 65536), ipv6 ? Flow6.ServerAddress : Flow4.ServerAddress, 443);
            return new FuzzInput(Encode(_c, "pop-a", PeerMessageType.Query, flow, (uint)_random.Next()), C4, FuzzKind.Fresh);
        }

        if (dice < 15)
        {
            byte[] noise = new byte[_random.Next(PeerMessageCodec.MaxLength + 40)];
            _random.NextBytes(noise);
            if (noise.Length > 0 && _random.Next(2) == 0)
            {
                noise[0] = PeerMessageCodec.Version; // past the first check more often
            }

            return new FuzzInput(noise, source, FuzzKind.Random);
        }

        byte[] data = Mutate(_seeds[_random.Next(_seeds.Count)].Datagram);
        if (data.Length > PeerMessageCodec.MacLength && _random.Next(4) == 0)
        {
            return new FuzzInput(Resign(data, _keyB), source, FuzzKind.Resigned);
        }

        return new FuzzInput(data, source, FuzzKind.Mutant);
    }

    private byte[] Mutate(byte[] original)
    {
        byte[] data = (byte[])original.Clone();
        int rounds = 1 + _random.Next(3);
        for (int r = 0; r < rounds; r++)
        {
            int at = data.Length == 0 ? 0 : _random.Next(data.Length);
            switch (_random.Next(8))
            {
                case 0 when data.Length > 0: // flip a bit
                    data[at] ^= (byte)(1 << _random.Next(8));
                    break;
                case 1 when data.Length > 0: // a random byte
                    data[at] = (byte)_random.Next(256);
                    break;
                case 2: // truncate
                    data = data[..(data.Length == 0 ? 0 : _random.Next(data.Length))];
                    break;
                case 3: // extend
                    byte[] tail = new byte[1 + _random.Next(40)];
                    _random.NextBytes(tail);
                    data = [.. data, .. tail];
                    break;
                case 4 when data.Length > PeerMessageCodec.NameLengthOffset: // a header field at a boundary value
                    data[_random.Next(PeerMessageCodec.NameLengthOffset + 1)] = BoundaryValues[_random.Next(BoundaryValues.Length)];
                    break;
                case 5: // insert a byte
                    data = [.. data[..at], (byte)_random.Next(256), .. data[at..]];
                    break;
                case 6 when data.Length > 0: // delete a byte
                    data = [.. data[..at], .. data[(at + 1)..]];
                    break;
                case 7: // splice another message's tail
                    byte[] other = _seeds[_random.Next(_seeds.Count)].Datagram;
                    int from = _random.Next(other.Length);
                    data = [.. data[..Math.Min(at, data.Length)], .. other[from..]];
                    break;
            }
        }

        return data;
    }
}
