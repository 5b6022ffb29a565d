using System.Net;
using BenchmarkDotNet.Attributes;
using MptcpAnycast.Rescue;
using MptcpAnycast.Rescue.Peers;

namespace MptcpAnycast.Benchmarks;

/// <summary>
/// The rescue peer-lookup codec, per datagram: encoding an answer, and taking a received one through every check
/// (structure, peer, source, MAC, clock, replay window), for a datagram rejected by its structure, one with a bad MAC
/// and one that passes the MAC (then rejected as a replay, the last check, since the bytes repeat).
/// </summary>
[MemoryDiagnoser]
public class PeerMessageCodecBenchmarks
{
    private readonly byte[] _buffer = new byte[PeerMessageCodec.MaxLength];
    private PeerDirectory _receiver = null!;
    private PeerState _toReceiver = null!;
    private byte[] _senderName = [];
    private PeerMessage _answer;
    private byte[] _valid = [];
    private byte[] _badMac = [];
    private byte[] _tooShort = [];
    private UInt128 _source;

    [GlobalSetup]
    public void Setup()
    {
        byte[] key = new byte[32];
        Array.Fill(key, (byte)0x5A);
        IPAddress a = IPAddress.Parse("192.0.2.10"), b = IPAddress.Parse("192.0.2.20");
        _receiver = new PeerDirectory(
            new PeerChannelOptions { LocalName = "pop-a", LocalIPv4 = a, Port = 62201, Peers = [new RescuePeer("pop-b", b, null, key)] }, TimeProvider.System);
        var sender = new PeerDirectory(
            new PeerChannelOptions { LocalName = "pop-b", LocalIPv4 = b, Port = 62201, Peers = [new RescuePeer("pop-a", a, null, key)] }, TimeProvider.System);
        if (!sender.TryGet("pop-a", out PeerState? toReceiver))
        {
            throw new InvalidOperationException("no peer");
        }

        _toReceiver = toReceiver;
        _senderName = sender.LocalNameBytes;
        _source = AddressBits.SourceKey(b);
        var flow = new TcpFlow(IPAddress.Parse("2001:db8::7"), 50000, IPAddress.Parse("2001:db8:ffff::1"), 443);
        _answer = new PeerMessage(PeerMessageType.Answer, 0, 42, WireFlow.From(flow), PeerVerdict.Owned);
        _valid = _buffer[..EncodeAnswer()];
        _badMac = (byte[])_valid.Clone();
        _badMac[^1] ^= 1;
        _tooShort = _valid[..40];
        if (_receiver.Open(_valid, _source, out _, out _) != PeerMessageStatus.Ok
            || OpenRepeated() != (int)PeerMessageStatus.Replayed || OpenBadMac() != (int)PeerMessageStatus.BadMac || OpenTooShort() != (int)PeerMessageStatus.TooShort)
        {
            throw new InvalidOperationException("unexpected decoding");
        }
    }

    [Benchmark]
    public int EncodeAnswer() =>
        PeerMessageCodec.Encode(_buffer, _senderName, _answer with { Sequence = _toReceiver.NextSequence() }, _toReceiver.Key);

    // The status as an int: the enum is internal and a benchmark method is public.
    [Benchmark]
    public int OpenRepeated() => (int)_receiver.Open(_valid, _source, out _, out _);

    [Benchmark]
    public int OpenBadMac() => (int)_receiver.Open(_badMac, _source, out _, out _);

    [Benchmark]
    public int OpenTooShort() => (int)_receiver.Open(_tooShort, _source, out _, out _);
}
