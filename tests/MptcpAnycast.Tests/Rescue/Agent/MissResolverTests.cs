using System.Net;
using Microsoft.Extensions.Time.Testing;
using MptcpAnycast.Rescue;
using MptcpAnycast.Rescue.Agent;
using MptcpAnycast.Rescue.Ownership;

namespace MptcpAnycast.Tests.Rescue.Agent;

public sealed class MissResolverTests
{
    private static readonly IPAddress Anycast = IPAddress.Parse("192.0.2.100");
    private static readonly RescuePeer PopA = new("a", IPAddress.Parse("198.51.100.1"), IPAddress.Parse("2001:db8:a::1"), new byte[32]);
    private static readonly RescuePeer PopC = new("c", IPAddress.Parse("198.51.100.3"), IPAddress.Parse("2001:db8:c::1"), new byte[32]);

    private readonly FakeTimeProvider _time = new();
    private readonly ScriptedLookup _lookup = new();
    private readonly RecordingOutput _output = new();

    [Fact]
    public async Task A_found_owner_goes_into_the_map_and_every_held_segment_follows_it_in_order()
    {
        MissResolver resolver = Make();
        TcpFlow flow = Flow("203.0.113.7", 40000);
        Task lookup = resolver.OnMiss(Miss(flow, packet: 1))!;
        Assert.Null(resolver.OnMiss(Miss(flow, packet: 2)));
        Assert.Null(resolver.OnMiss(Miss(flow, packet: 3)));

        _lookup.Answer(flow, PopA);
        await lookup.WithTimeout();

        Assert.Equal([(flow, PopA.UnicastIPv4!)], _output.Owners);
        Assert.Equal([1, 2, 3], _output.Encapsulated.Select(e => (int)e.Packet[0]));
        Assert.All(_output.Encapsulated, e => Assert.Equal(PopA.UnicastIPv4, e.Owner));
        Assert.Single(_lookup.Asked);
        MissResolverCounters counters = resolver.Counters;
        Assert.Equal((3, 2, 1, 1, 3L), (counters.Misses, counters.Coalesced, counters.Lookups, counters.Found, counters.HeldSent));
    }

    [Fact]
    public async Task An_IPv6_flow_is_handed_to_the_owner_s_IPv6_unicast()
    {
        MissResolver resolver = Make();
        var flow = new TcpFlow(IPAddress.Parse("2001:db8:1::7"), 40000, IPAddress.Parse("2001:db8:ac::1"), 443);
        Task lookup = resolver.OnMiss(Miss(flow, packet: 0x60))!;
        _lookup.Answer(flow, PopA);
        await lookup.WithTimeout();
        Assert.Equal(PopA.UnicastIPv6, _output.Owners.Single().Owner);
    }

    [Fact]
    public async Task A_flow_no_POP_owns_is_reset_with_the_latest_segment_and_then_reset_at_once_without_asking_again()
    {
        MissResolver resolver = Make();
        TcpFlow flow = Flow("203.0.113.7", 40001);
        Task lookup = resolver.OnMiss(Miss(flow, ack: 100))!;
        _ = resolver.OnMiss(Miss(flow, ack: 200));
        _lookup.Answer(flow, null);
        await lookup.WithTimeout();

        Assert.Equal([200u], _output.Resets.Select(r => r.AcknowledgementSequence));
        Assert.Empty(_output.Owners);

        Assert.Null(resolver.OnMiss(Miss(flow, ack: 300)));
        Assert.Equal([200u, 300u], _output.Resets.Select(r => r.AcknowledgementSequence));
        Assert.Single(_lookup.Asked);

        _time.Advance(TimeSpan.FromSeconds(3)); // past NoOwnerMemory: asked again
        Assert.NotNull(resolver.OnMiss(Miss(flow, ack: 400)));
        Assert.Equal(2, _lookup.Asked.Count);
    }

    [Fact]
    public async Task A_lookup_that_no_peer_answers_ends_at_the_timeout_with_a_reset()
    {
        MissResolver resolver = Make(new MissResolverSettings { LookupTimeout = TimeSpan.FromMilliseconds(250) });
        TcpFlow flow = Flow("203.0.113.7", 40002);
        Task lookup = resolver.OnMiss(Miss(flow))!;
        _time.Advance(TimeSpan.FromMilliseconds(249));
        Assert.False(lookup.IsCompleted);
        _time.Advance(TimeSpan.FromMilliseconds(2));
        await lookup.WithTimeout();
        Assert.Single(_output.Resets);
        Assert.Equal(1, resolver.Counters.NotFound);
    }

    [Fact]
    public async Task The_owner_found_for_a_client_prefix_is_the_hint_for_the_next_flow_from_it()
    {
        MissResolver resolver = Make();
        TcpFlow first = Flow("203.0.113.7", 40003), sameSlash24 = Flow("203.0.113.250", 40004), other = Flow("198.51.100.9", 40005);
        Task lookup = resolver.OnMiss(Miss(first))!;
        _lookup.Answer(first, PopC);
        await lookup.WithTimeout();

        _ = resolver.OnMiss(Miss(sameSlash24));
        _ = resolver.OnMiss(Miss(other));

        Assert.Equal([null, PopC, null], _lookup.Asked.Select(a => a.Hint));
        Assert.Equal(1, resolver.Counters.HintsUsed);
    }

    [Fact]
    public void Lookups_beyond_the_rate_are_refused_and_counted()
    {
        MissResolver resolver = Make(new MissResolverSettings { LookupsPerSecond = 10 });
        for (int i = 0; i < 25; i++)
        {
            _ = resolver.OnMiss(Miss(Flow("203.0.113.7", 41000 + i)));
        }

        Assert.Equal(10, _lookup.Asked.Count);
        Assert.Equal(15, resolver.Counters.LookupRateLimited);
        _time.Advance(TimeSpan.FromMilliseconds(500));
        Assert.NotNull(resolver.OnMiss(Miss(Flow("203.0.113.7", 42000))));
    }

    [Fact]
    public void Pending_flows_are_bounded()
    {
        MissResolver resolver = Make(new MissResolverSettings { MaxPendingFlows = 3, LookupsPerSecond = 1000 });
        for (int i = 0; i < 5; i++)
        {
            _ = resolver.OnMiss(Miss(Flow("203.0.113.7", 43000 + i)));
        }

        Assert.Equal(3, resolver.PendingCount);
        Assert.Equal(2, resolver.Counters.PendingFull);
    }

    [Fact]
    public async Task Held_segments_are_bounded_per_flow()
    {
        MissResolver resolver = Make(new MissResolverSettings { MaxHeldPerFlow = 2 });
        TcpFlow flow = Flow("203.0.113.7", 40006);
        Task lookup = resolver.OnMiss(Miss(flow, packet: 1))!;
        for (int i = 2; i <= 5; i++)
        {
            _ = resolver.OnMiss(Miss(flow, packet: (byte)i));
        }

        _lookup.Answer(flow, PopA);
        await lookup.WithTimeout();
        Assert.Equal([1, 2], _output.Encapsulated.Select(e => (int)e.Packet[0]));
        Assert.Equal(3, resolver.Counters.HeldDropped);
    }

    [Fact]
    public async Task Resets_are_bounded_per_second()
    {
        MissResolver resolver = Make(new MissResolverSettings { ResetsPerSecond = 2, LookupsPerSecond = 100 });
        var lookups = new List<Task>();
        for (int i = 0; i < 5; i++)
        {
            TcpFlow flow = Flow("203.0.113.7", 44000 + i);
            lookups.Add(resolver.OnMiss(Miss(flow))!);
            _lookup.Answer(flow, null);
        }

        await Task.WhenAll(lookups).WithTimeout();
        Assert.Equal(2, _output.Resets.Count);
        Assert.Equal(3, resolver.Counters.ResetsRateLimited);
    }

    [Fact]
    public async Task A_failing_lookup_is_logged_and_the_flow_is_reset()
    {
        var logged = new List<string>();
        MissResolver resolver = Make(log: (message, _) => logged.Add(message));
        TcpFlow flow = Flow("203.0.113.7", 40007);
        Task lookup = resolver.OnMiss(Miss(flow))!;
        _lookup.Fail(flow, new InvalidOperationException("boom"));
        await lookup.WithTimeout();
        Assert.Contains(logged, m => m.Contains(flow.ToString(), StringComparison.Ordinal));
        Assert.Single(_output.Resets);
        Assert.Equal(1, resolver.Counters.Failures);
    }

    [Theory]
    [InlineData("203.0.113.7", "203.0.113.200", true)]
    [InlineData("203.0.113.7", "203.0.114.7", false)]
    [InlineData("2001:db8:1:2::7", "2001:db8:1:ffff::1", true)]
    [InlineData("2001:db8:1::7", "2001:db8:2::7", false)]
    public void The_hint_prefix_is_the_client_s_slash_24_or_slash_48(string a, string b, bool same) =>
        Assert.Equal(same, MissResolver.PrefixOf(IPAddress.Parse(a)) == MissResolver.PrefixOf(IPAddress.Parse(b)));

    private MissResolver Make(MissResolverSettings? settings = null, Action<string, Exception?>? log = null) =>
        new(_lookup, _output, settings ?? new MissResolverSettings(), _time, log);

    private static TcpFlow Flow(string client, int port) => new(IPAddress.Parse(client), port, Anycast, 443);

    private static RescueMiss Miss(TcpFlow flow, byte packet = 0x45, uint ack = 1) =>
        new(flow, 1, ack, RescueMiss.Ack, [packet, 0, 0, 0]);

    private sealed class ScriptedLookup : IFlowOwnerLookup
    {
        private readonly Dictionary<TcpFlow, TaskCompletionSource<RescuePeer?>> _answers = [];

        public List<(TcpFlow Flow, RescuePeer? Hint)> Asked { get; } = [];

        public void Answer(TcpFlow flow, RescuePeer? owner) => Get(flow).TrySetResult(owner);

        public void Fail(TcpFlow flow, Exception e) => Get(flow).TrySetException(e);

        public async ValueTask<RescuePeer?> FindOwnerAsync(TcpFlow flow, RescuePeer? hint, CancellationToken cancellationToken)
        {
            Asked.Add((flow, hint));
            return await Get(flow).Task.WaitAsync(cancellationToken);
        }

        private TaskCompletionSource<RescuePeer?> Get(TcpFlow flow)
        {
            lock (_answers)
            {
                if (!_answers.TryGetValue(flow, out TaskCompletionSource<RescuePeer?>? answer))
                {
                    _answers[flow] = answer = new(TaskCreationOptions.RunContinuationsAsynchronously);
                }

                return answer;
            }
        }
    }

    private sealed class RecordingOutput : IRescueOutput
    {
        public List<(TcpFlow Flow, IPAddress Owner)> Owners { get; } = [];

        public List<(IPAddress Owner, byte[] Packet)> Encapsulated { get; } = [];

        public List<RescueMiss> Resets { get; } = [];

        public void SetOwner(TcpFlow flow, IPAddress owner, TimeSpan waited)
        {
            lock (this)
            {
                Owners.Add((flow, owner));
            }
        }

        public bool SendEncapsulated(IPAddress owner, ReadOnlySpan<byte> packet)
        {
            byte[] copy = packet.ToArray();
            lock (this)
            {
                Encapsulated.Add((owner, copy));
            }

            return true;
        }

        public void SendReset(RescueMiss miss)
        {
            lock (this)
            {
                Resets.Add(miss);
            }
        }
    }
}
