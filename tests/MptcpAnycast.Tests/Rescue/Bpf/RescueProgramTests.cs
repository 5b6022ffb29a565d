using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Lab;
using MptcpAnycast.Rescue;
using MptcpAnycast.Rescue.Bpf;
using static MptcpAnycast.Tests.Common.TestPackets;

namespace MptcpAnycast.Tests.Rescue.Bpf;

/// <summary>
/// The rescue program's decisions, run in the kernel with BPF_PROG_TEST_RUN on crafted frames (nothing is attached).
/// 127.0.0.1 and ::1 stand in for the anycast addresses so that real loopback sockets can be "local".
/// </summary>
public sealed class RescueProgramTests : IDisposable
{
    private const int TcActPass = -1, TcActShot = 2, TcActRedirect = 7;
    private const int OwnerCapacity = 65_536; // rescue_owners' max_entries

    private static readonly IPAddress Client4 = IPAddress.Parse("203.0.113.7");
    private static readonly IPAddress Client6 = IPAddress.Parse("2001:db8:c::7");
    private static readonly IPAddress Local4 = IPAddress.Parse("198.51.100.2");
    private static readonly IPAddress Local6 = IPAddress.Parse("2001:db8:b::2");
    private static readonly IPAddress Owner4 = IPAddress.Parse("198.51.100.1");
    private static readonly IPAddress Owner6 = IPAddress.Parse("2001:db8:a::1");

    private readonly RescueDataplane _dataplane = RescueDataplane.Load();

    public RescueProgramTests()
    {
        _dataplane.Configure(new RescueDataplaneConfig { LocalIPv4 = Local4, LocalIPv6 = Local6, MssIPv4 = 1440, MssIPv6 = 1400 }, enabled: true);
        _dataplane.SetAnycast([IPAddress.Loopback, IPAddress.IPv6Loopback]);
        _dataplane.SetPeers([Owner4, Owner6]);
    }

    public void Dispose() => _dataplane.Dispose();

    [Fact]
    public void Traffic_to_an_address_that_is_not_anycast_passes_untouched()
    {
        byte[] frame = Tcp(Client4, 40000, IPAddress.Parse("192.0.2.9"), 80, Ack);
        (int verdict, byte[] output) = Run(frame);
        Assert.Equal(TcActPass, verdict);
        Assert.Equal(frame, output);
        Assert.Equal(1UL, _dataplane.ReadCounters().NotAnycast);
    }

    [Theory]
    [InlineData(false, 1)]
    [InlineData(false, 8)] // the most the configuration holds in place
    [InlineData(false, 9)] // one more: the program asks the anycast map
    [InlineData(true, 8)]
    [InlineData(true, 40)]
    public void Every_configured_anycast_address_is_steered_and_no_other_whether_held_in_place_or_in_the_map(bool ipv6, int count)
    {
        // The loopback address is the last of the set; the one after the set is not anycast.
        static IPAddress Nth(bool ipv6, int i) => ipv6 ? IPAddress.Parse($"2001:db8:ac::{i + 1:x}") : IPAddress.Parse($"192.0.2.{i + 1}");
        IPAddress loopback = ipv6 ? IPAddress.IPv6Loopback : IPAddress.Loopback;
        IPAddress other = ipv6 ? IPAddress.Parse("203.0.113.200") : IPAddress.Parse("2001:db8:ac::ff"); // one of the other family
        _dataplane.SetAnycast([other, .. Enumerable.Range(0, count - 1).Select(i => Nth(ipv6, i)), loopback]);
        IPAddress client = ipv6 ? Client6 : Client4;

        Assert.Equal(TcActPass, Run(Tcp(client, 40030, loopback, 443, Syn)).Verdict);
        Assert.Equal(TcActPass, Run(Tcp(client, 40030, Nth(ipv6, count), 443, Syn)).Verdict);
        Assert.Equal(TcActShot, Run(Tcp(client, 40031, loopback, 443, Ack)).Verdict); // a miss: steered, not passed
        RescueDataplaneCounters counters = _dataplane.ReadCounters();
        Assert.Equal((1UL, 1UL, 1UL), (counters.LocalSyn, counters.NotAnycast, counters.MissUnreported + counters.Miss));

        // The set shrinks back: the address it no longer holds passes untouched, in place or not.
        _dataplane.SetAnycast([Nth(ipv6, 0)]);
        byte[] frame = Tcp(client, 40031, loopback, 443, Ack);
        Assert.Equal(frame, Run(frame).Output);
        Assert.Equal(2UL, _dataplane.ReadCounters().NotAnycast);
    }

    [Fact]
    public void Writing_the_configuration_again_keeps_the_anycast_addresses()
    {
        _dataplane.Configure(new RescueDataplaneConfig { LocalIPv4 = Local4, MssIPv4 = 1400 }, enabled: true);
        Assert.Equal(TcActShot, Run(Tcp(Client4, 40032, IPAddress.Loopback, 443, Ack)).Verdict);
        Assert.Equal(0UL, _dataplane.ReadCounters().NotAnycast);
    }

    [Fact]
    public void A_disabled_program_passes_even_a_flow_it_would_tunnel()
    {
        _dataplane.Configure(new RescueDataplaneConfig { LocalIPv4 = Local4 }, enabled: false);
        _dataplane.SetOwner(new TcpFlow(Client4, 40001, IPAddress.Loopback, 80), Owner4);
        Assert.Equal(TcActPass, Run(Tcp(Client4, 40001, IPAddress.Loopback, 80, Ack)).Verdict);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_SYN_is_local_even_when_an_owner_is_known_and_forgets_that_owner(bool ipv6)
    {
        // Client and server addresses differ and the ports vary, so that a hash in C# that swapped client and server,
        // or the two ports, would set a bit the program does not read, and the SYN would leave the entry in place.
        (_, IPAddress anycast, IPAddress owner) = Addresses(ipv6);
        var random = new Random(ipv6 ? 6 : 4);
        const int Flows = 64;
        for (int i = 0; i < Flows; i++)
        {
            IPAddress client = ipv6
                ? IPAddress.Parse($"2001:db8:c:{random.Next(0x10000):x}::{random.Next(1, 0x10000):x}")
                : IPAddress.Parse($"203.0.113.{random.Next(1, 255)}");
            var flow = new TcpFlow(client, random.Next(1024, 65536), anycast, random.Next(1, 65536));
            _dataplane.SetOwner(flow, owner);
            Assert.Equal(TcActPass, Run(Tcp(client, flow.ClientPort, anycast, flow.ServerPort, Syn)).Verdict);
            Assert.Null(_dataplane.GetOwner(flow));
        }

        RescueDataplaneCounters counters = _dataplane.ReadCounters();
        Assert.Equal(((ulong)Flows, (ulong)Flows), (counters.LocalSyn, counters.OwnerForgotten));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_segment_of_a_known_flow_goes_to_its_owner_in_an_outer_header(bool ipv6)
    {
        (IPAddress client, IPAddress anycast, IPAddress owner) = Addresses(ipv6);
        _dataplane.SetOwner(new TcpFlow(client, 40003, anycast, 8080), owner);
        byte[] frame = Tcp(client, 40003, anycast, 8080, Ack, payload: 100);

        (int verdict, byte[] output) = Run(frame);

        Assert.Equal(TcActRedirect, verdict);
        int outer = ipv6 ? 40 : 20;
        Assert.Equal(frame.Length + outer, output.Length);
        ReadOnlySpan<byte> header = output.AsSpan(EthernetLength, outer);
        if (ipv6)
        {
            Assert.Equal(0x60, header[0] & 0xf0);
            Assert.Equal(frame.Length - EthernetLength, BinaryPrimitives.ReadUInt16BigEndian(header[4..]));
            Assert.Equal(41, header[6]); // IPv6-in-IPv6
            Assert.Equal(Local6, new IPAddress(header.Slice(8, 16)));
            Assert.Equal(owner, new IPAddress(header.Slice(24, 16)));
        }
        else
        {
            Assert.Equal(0x45, header[0]);
            Assert.Equal(frame.Length - EthernetLength + 20, BinaryPrimitives.ReadUInt16BigEndian(header[2..]));
            Assert.Equal(0x4000, BinaryPrimitives.ReadUInt16BigEndian(header[6..])); // DF
            Assert.Equal(4, header[9]); // IPIP
            Assert.Equal(Local4, new IPAddress(header.Slice(12, 4)));
            Assert.Equal(owner, new IPAddress(header.Slice(16, 4)));
            Assert.True(Ipv4HeaderChecksumValid(header), "outer IPv4 header checksum");
        }

        Assert.Equal(frame.AsSpan(EthernetLength).ToArray(), output.AsSpan(EthernetLength + outer).ToArray());
        Assert.Equal(1UL, _dataplane.ReadCounters().Tunnelled);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_SYN_that_reuses_the_tuple_of_a_flow_with_an_owner_forgets_the_owner_and_its_connection_stays_local(bool ipv6)
    {
        using LoopbackPair pair = await LoopbackPair.ConnectAsync(ipv6 ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork, mptcpClient: false);
        var client = (IPEndPoint)pair.Client.LocalEndPoint!;
        var server = (IPEndPoint)pair.Server.LocalEndPoint!;
        var flow = new TcpFlow(client.Address, client.Port, server.Address, server.Port);
        _dataplane.SetOwner(flow, ipv6 ? Owner6 : Owner4); // learned for an earlier connection on the same tuple

        // The program reads the owner map first for a hinted flow, so the new connection's SYN must clear the way;
        // it does so only where the program finds the bit userspace set: the two compute the same hash.
        Assert.Equal(TcActPass, Run(Tcp(client.Address, client.Port, server.Address, server.Port, Syn)).Verdict);
        Assert.Null(_dataplane.GetOwner(flow));
        Assert.Equal(TcActPass, Run(Tcp(client.Address, client.Port, server.Address, server.Port, Ack)).Verdict);
        RescueDataplaneCounters counters = _dataplane.ReadCounters();
        Assert.Equal((1UL, 1UL, 1UL, 0UL), (counters.LocalSyn, counters.OwnerForgotten, counters.LocalSocket, counters.Tunnelled));
    }

    [Fact]
    public async Task A_local_segment_whose_hint_bit_another_flow_set_stays_local()
    {
        using LoopbackPair pair = await LoopbackPair.ConnectAsync(AddressFamily.InterNetwork, mptcpClient: false);
        var client = (IPEndPoint)pair.Client.LocalEndPoint!;
        var server = (IPEndPoint)pair.Server.LocalEndPoint!;
        TcpFlow local = new(client.Address, client.Port, server.Address, server.Port);
        TcpFlow other = CollidingFlow(local);
        _dataplane.SetOwner(other, Owner4);

        Assert.Equal(TcActPass, Run(Tcp(client.Address, client.Port, server.Address, server.Port, Ack)).Verdict);
        Assert.Equal(TcActRedirect, Run(Tcp(other.ClientAddress, other.ClientPort, other.ServerAddress, other.ServerPort, Ack)).Verdict);
        RescueDataplaneCounters counters = _dataplane.ReadCounters();
        Assert.Equal((1UL, 1UL), (counters.LocalSocket, counters.Tunnelled));
    }

    [Fact]
    public void An_owner_whose_hint_bit_this_program_lacks_is_still_found_and_a_later_load_rebuilds_the_hint()
    {
        // Two agents on one pinned owner map (a restart): each has a hint of its own, and only the writer's has the bit.
        string bpffs = Directory.CreateTempSubdirectory("mpa-bpffs-").FullName;
        CommandRunner.Run("mount", ["-t", "bpf", "bpf", bpffs]);
        try
        {
            string pin = Path.Combine(bpffs, "owners");
            var flow = new TcpFlow(Client4, 40040, IPAddress.Loopback, 443);
            using RescueDataplane writer = Configured(RescueDataplane.Load(pin));
            using RescueDataplane reader = Configured(RescueDataplane.Load(pin));
            writer.SetOwner(flow, Owner4);
            Assert.Equal((1, 0), (writer.Hint.BitsSet, reader.Hint.BitsSet));

            Assert.Equal(TcActRedirect, Run(Tcp(Client4, 40040, IPAddress.Loopback, 443, Ack), reader).Verdict);
            Assert.Equal(1UL, reader.ReadCounters().Tunnelled);
            using RescueDataplane restarted = RescueDataplane.Load(pin);
            Assert.Equal(1, restarted.Hint.BitsSet);
        }
        finally
        {
            CommandRunner.Run("umount", ["-l", bpffs]);
            Directory.Delete(bpffs);
        }
    }

    [Fact]
    public void Once_stale_bits_fill_an_eighth_of_the_hint_it_is_rebuilt_from_the_owner_map()
    {
        static TcpFlow Flow(int i) => new(IPAddress.Parse($"2001:db8:c::{i >> 16:x}:{i & 0xffff:x}"), 40041, IPAddress.IPv6Loopback, 443);
        TcpFlow kept = Flow(int.MaxValue);
        _dataplane.SetOwner(kept, Owner6);
        int rebuilds = _dataplane.Hint.Rebuilds, i = 0;
        for (; _dataplane.Hint.Rebuilds == rebuilds && i < 2 * OwnerHint.RebuildAt; i++)
        {
            _dataplane.SetOwner(Flow(i), Owner6);
            Assert.True(_dataplane.RemoveOwner(Flow(i))); // evicted or forgotten: its bit stays behind
        }

        _dataplane.Hint.WaitForRebuild();
        Assert.Equal(rebuilds + 1, _dataplane.Hint.Rebuilds);
        Assert.InRange(i, OwnerHint.RebuildAt, 2 * OwnerHint.RebuildAt); // collisions make a few flows share a bit
        // The rebuild ran in the background while the loop went on: the flows recorded during its walk keep their bits.
        Assert.InRange(_dataplane.Hint.BitsSet, 1, i - OwnerHint.RebuildAt + 2);
        Assert.True(_dataplane.Hint.Rebuild());
        Assert.InRange(_dataplane.Hint.BitsSet, 1, 2); // the kept flow's, and perhaps the last flow's
        Assert.Equal(TcActRedirect, Run(Tcp(kept.ClientAddress, kept.ClientPort, kept.ServerAddress, kept.ServerPort, Ack)).Verdict);
    }

    [Fact]
    public void Owner_entries_idle_beyond_the_timeout_are_deleted_a_tunnelled_segment_keeps_its_own_and_the_last_one_switches_the_hint_off()
    {
        var used = new TcpFlow(Client4, 40050, IPAddress.Loopback, 443);
        var idle = new TcpFlow(Client4, 40051, IPAddress.Loopback, 443);
        byte[] Segment(TcpFlow flow) => Tcp(flow.ClientAddress, flow.ClientPort, flow.ServerAddress, flow.ServerPort, Ack);
        TimeSpan timeout = TimeSpan.FromSeconds(60);
        uint start = RescueDataplane.NowSeconds();
        Assert.False(_dataplane.Hint.Active); // nothing rescued: local segments do not read the hint
        _dataplane.SetOwner(used, Owner4);
        _dataplane.SetOwner(idle, Owner4);
        Assert.True(_dataplane.Hint.Active);

        Assert.Equal(0, _dataplane.ExpireIdleOwners(timeout, start + 30)); // both written 30 s ago: kept
        Assert.Equal(TcActRedirect, Run(Segment(used)).Verdict); // stamps the program's clock, start + 30, on its entry
        Assert.Equal(1, _dataplane.ExpireIdleOwners(timeout, start + 80)); // idle 80 s against 50 s
        Assert.Null(_dataplane.GetOwner(idle));
        Assert.NotNull(_dataplane.GetOwner(used));
        Assert.True(_dataplane.Hint.Active);
        Assert.Equal(TcActShot, Run(Segment(idle)).Verdict); // a miss again: looked up anew, not tunnelled on a stale entry

        Assert.Equal(1, _dataplane.ExpireIdleOwners(timeout, start + 200));
        Assert.Empty(_dataplane.ListOwners());
        Assert.Equal((0, false), (_dataplane.Hint.BitsSet, _dataplane.Hint.Active));
        Assert.Equal(TcActShot, Run(Segment(used)).Verdict);

        _dataplane.SetOwner(used, Owner4); // rescued again
        Assert.True(_dataplane.Hint.Active);
        Assert.Equal(TcActRedirect, Run(Segment(used)).Verdict);
        RescueDataplaneCounters counters = _dataplane.ReadCounters();
        Assert.Equal((2UL, 2UL), (counters.Tunnelled, counters.Miss + counters.MissUnreported));
    }

    [Theory]
    [InlineData(100u, 40u, 60u, false)] // idle exactly the timeout: kept
    [InlineData(100u, 39u, 60u, true)]
    [InlineData(100u, 101u, 60u, false)] // stamped a second after this clock read: fresh, not 2^32 - 1 seconds idle
    [InlineData(5u, 4294967290u, 3u, true)] // 11 s across the clock's wrap
    [InlineData(1_000_000u, 0u, 600u, true)] // an entry of an agent that kept no stamp: idle since boot
    public void An_entry_is_idle_only_when_its_stamp_is_older_than_the_timeout(uint now, uint used, uint idle, bool expected) =>
        Assert.Equal(expected, OwnerHint.IsIdle(now, used, idle));

    [Fact]
    public async Task With_the_hint_switched_off_a_SYN_leaves_no_owner_behind_to_steal_its_connection()
    {
        // The flag goes off only once the owner map is empty, so no entry is left for a SYN to forget; check that a
        // connection opened while it is off stays local once the flag is on again for another flow.
        using LoopbackPair pair = await LoopbackPair.ConnectAsync(AddressFamily.InterNetwork, mptcpClient: false);
        var client = (IPEndPoint)pair.Client.LocalEndPoint!;
        var server = (IPEndPoint)pair.Server.LocalEndPoint!;
        var flow = new TcpFlow(client.Address, client.Port, server.Address, server.Port);
        _dataplane.SetOwner(flow, Owner4); // an earlier connection on the tuple, rescued
        Assert.Equal(1, _dataplane.ExpireIdleOwners(TimeSpan.FromSeconds(1), RescueDataplane.NowSeconds() + 10));
        Assert.False(_dataplane.Hint.Active);

        Assert.Equal(TcActPass, Run(Tcp(client.Address, client.Port, server.Address, server.Port, Syn)).Verdict);
        _dataplane.SetOwner(CollidingFlow(flow), Owner4); // the flag on again, and this flow's bit set by another
        Assert.Equal(TcActPass, Run(Tcp(client.Address, client.Port, server.Address, server.Port, Ack)).Verdict);
        RescueDataplaneCounters counters = _dataplane.ReadCounters();
        Assert.Equal((1UL, 0UL, 1UL, 0UL), (counters.LocalSyn, counters.OwnerForgotten, counters.LocalSocket, counters.Tunnelled));
    }

    [Fact]
    public async Task A_listener_alone_does_not_make_a_segment_local()
    {
        using LoopbackPair pair = await LoopbackPair.ConnectAsync(AddressFamily.InterNetwork, mptcpClient: false);
        int listenerPort = ((IPEndPoint)pair.Listener.LocalEndPoint!).Port;
        var flow = new TcpFlow(IPAddress.Loopback, 1, IPAddress.Loopback, listenerPort); // no connection from port 1
        _dataplane.SetOwner(flow, Owner4);

        Assert.Equal(TcActRedirect, Run(Tcp(IPAddress.Loopback, 1, IPAddress.Loopback, listenerPort, Ack)).Verdict);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_segment_of_an_unknown_flow_is_dropped_and_reported_with_a_copy(bool ipv6)
    {
        (IPAddress client, IPAddress anycast, _) = Addresses(ipv6);
        var misses = new List<RescueMiss>();
        using (var reader = new MissReader(_dataplane, miss => { lock (misses) { misses.Add(miss); } }))
        {
            byte[] frame = Tcp(client, 40004, anycast, 443, Ack, seq: 123456, ack: 654321, payload: 200);
            Assert.Equal(TcActShot, Run(frame).Verdict);
            await Eventually.TrueAsync(() => { lock (misses) { return misses.Count == 1; } }, "one miss report");

            RescueMiss miss = misses[0];
            Assert.Equal(new TcpFlow(client, 40004, anycast, 443), miss.Flow);
            Assert.Equal(123456u, miss.Sequence);
            Assert.Equal(654321u, miss.AcknowledgementSequence);
            Assert.True(miss.HasAck);
            Assert.Equal(frame.AsSpan(EthernetLength).ToArray(), miss.Held);
        }

        Assert.Equal(1UL, _dataplane.ReadCounters().Miss);
    }

    [Fact]
    public void A_RST_of_an_unknown_flow_is_dropped_without_a_report()
    {
        Assert.Equal(TcActShot, Run(Tcp(Client4, 40005, IPAddress.Loopback, 443, Rst)).Verdict);
        RescueDataplaneCounters counters = _dataplane.ReadCounters();
        Assert.Equal(1UL, counters.MissRst);
        Assert.Equal(0UL, counters.Miss);
    }

    [Fact]
    public async Task Reports_beyond_the_bound_per_window_are_only_counted()
    {
        _dataplane.Configure(new RescueDataplaneConfig { LocalIPv4 = Local4, MissReportsPerWindow = 5, MissWindow = TimeSpan.FromSeconds(30) }, enabled: true);
        int reported = 0;
        using (var reader = new MissReader(_dataplane, _ => Interlocked.Increment(ref reported)))
        {
            for (int i = 0; i < 50; i++)
            {
                Run(Tcp(Client4, 41000 + i, IPAddress.Loopback, 443, Ack));
            }

            await Eventually.TrueAsync(() => Volatile.Read(ref reported) >= 5, "five reports");
            await Task.Delay(100);
        }

        RescueDataplaneCounters counters = _dataplane.ReadCounters();
        Assert.Equal(50UL, counters.Miss);
        // Test runs may land on either CPU; each CPU has its own window.
        Assert.InRange(reported, 5, 5 * Environment.ProcessorCount);
        Assert.Equal(50UL - (ulong)reported, counters.MissUnreported);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_packet_encapsulated_by_a_peer_is_decapsulated_and_delivered(bool ipv6)
    {
        (IPAddress client, IPAddress anycast, IPAddress peer) = Addresses(ipv6);
        byte[] inner = Tcp(client, 40006, anycast, 80, Ack, payload: 64).AsSpan(EthernetLength).ToArray();
        byte[] frame = Ip(peer, ipv6 ? Local6 : Local4, ipv6 ? (byte)41 : (byte)4, inner);

        (int verdict, byte[] output) = Run(frame);

        Assert.Equal(TcActPass, verdict);
        Assert.Equal(inner, output.AsSpan(EthernetLength).ToArray());
        Assert.Equal(ipv6 ? 0x86dd : 0x0800, BinaryPrimitives.ReadUInt16BigEndian(output.AsSpan(12)));
        Assert.Equal(1UL, _dataplane.ReadCounters().Decapsulated);
    }

    [Theory]
    [InlineData("192.0.2.66", "198.51.100.2")] // not a peer
    [InlineData("198.51.100.1", "198.51.100.99")] // a peer, but not to this POP's unicast
    public void An_encapsulated_packet_from_elsewhere_is_dropped(string source, string destination)
    {
        byte[] inner = Tcp(Client4, 40007, IPAddress.Loopback, 80, Ack).AsSpan(EthernetLength).ToArray();
        Assert.Equal(TcActShot, Run(Ip(IPAddress.Parse(source), IPAddress.Parse(destination), 4, inner)).Verdict);
        Assert.Equal(1UL, _dataplane.ReadCounters().ForeignTunnel);
    }

    [Fact]
    public void A_decapsulated_packet_is_never_sent_on_again()
    {
        // The inner flow has an owner here too (two POPs that each think the other owns it): delivered, not bounced.
        var flow = new TcpFlow(Client4, 40008, IPAddress.Loopback, 80);
        _dataplane.SetOwner(flow, Owner4);
        byte[] inner = Tcp(Client4, 40008, IPAddress.Loopback, 80, Ack).AsSpan(EthernetLength).ToArray();
        Assert.Equal(TcActPass, Run(Ip(Owner4, Local4, 4, inner)).Verdict);
        Assert.Equal(0UL, _dataplane.ReadCounters().Tunnelled);
    }

    [Fact]
    public void A_fragment_to_an_anycast_address_is_dropped()
    {
        byte[] tcp = Tcp(Client4, 40009, IPAddress.Loopback, 80, Ack).AsSpan(EthernetLength + 20).ToArray();
        Assert.Equal(TcActShot, Run(Ip(Client4, IPAddress.Loopback, 6, tcp, fragment: 0x2000)).Verdict);
        Assert.Equal(1UL, _dataplane.ReadCounters().Malformed);
    }

    [Theory]
    [InlineData(false, 3, 4)] // fragmentation needed
    [InlineData(true, 2, 0)] // packet too big
    public void An_ICMP_error_about_a_tunnelled_flow_goes_to_the_owner(bool ipv6, byte type, byte code)
    {
        (IPAddress client, IPAddress anycast, IPAddress owner) = Addresses(ipv6);
        _dataplane.SetOwner(new TcpFlow(client, 40010, anycast, 443), owner);
        // The owner's segment to the client, quoted by a router on the way.
        byte[] quoted = Tcp(anycast, 443, client, 40010, Ack, payload: 0).AsSpan(EthernetLength).ToArray();
        IPAddress router = IPAddress.Parse(ipv6 ? "2001:db8:ff::1" : "192.0.2.254");

        Assert.Equal(TcActRedirect, Run(IcmpError(router, anycast, type, code, quoted)).Verdict);
        Assert.Equal(1UL, _dataplane.ReadCounters().IcmpForwarded);
    }

    [Fact]
    public void An_ICMP_error_about_a_flow_that_is_not_tunnelled_passes()
    {
        byte[] quoted = Tcp(IPAddress.Loopback, 443, Client4, 40011, Ack, payload: 0).AsSpan(EthernetLength).ToArray();
        Assert.Equal(TcActPass, Run(IcmpError(IPAddress.Parse("192.0.2.254"), IPAddress.Loopback, 3, 4, quoted)).Verdict);
    }

    [Theory]
    [InlineData(false, 1460, 1440)]
    [InlineData(true, 1440, 1400)]
    [InlineData(false, 1400, 1400)] // already below the budget
    public void A_SYN_ACK_from_an_anycast_address_advertises_at_most_the_MSS_budget(bool ipv6, int advertised, int expected)
    {
        (IPAddress client, IPAddress anycast, _) = Addresses(ipv6);
        // MSS, SACK permitted, timestamps, NOP, window scale: Linux's order.
        byte[] options = [2, 4, (byte)(advertised >> 8), (byte)advertised, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7];
        byte[] frame = Tcp(anycast, 443, client, 40012, Syn | Ack, payload: 0, options: options);

        (int verdict, byte[] output) = Run(frame, ingress: false);

        Assert.Equal(TcActPass, verdict);
        int tcp = EthernetLength + (ipv6 ? 40 : 20);
        Assert.Equal(expected, BinaryPrimitives.ReadUInt16BigEndian(output.AsSpan(tcp + 22)));
        ushort stored = BinaryPrimitives.ReadUInt16BigEndian(output.AsSpan(tcp + 16));
        Assert.Equal(TransportChecksum(anycast, client, 6, output.AsSpan(tcp)), stored);
        Assert.Equal(advertised > expected ? 1UL : 0UL, _dataplane.ReadCounters().MssClamped);
    }

    [Fact]
    public void A_SYN_ACK_from_another_address_keeps_its_MSS()
    {
        byte[] options = [2, 4, 0x05, 0xb4];
        byte[] frame = Tcp(IPAddress.Parse("198.51.100.2"), 443, Client4, 40013, Syn | Ack, payload: 0, options: options);
        Assert.Equal(frame, Run(frame, ingress: false).Output);
    }

    [Fact]
    public void A_full_owner_map_written_from_one_CPU_forgets_its_least_recently_written_flows_and_keeps_the_recent_ones()
    {
        using (ThreadCpu.PinTo(ThreadCpu.Allowed()[0]))
        {
            for (int i = 0; i < 2 * OwnerCapacity; i++)
            {
                _dataplane.SetOwner(EvictionFlow(i), Owner6); // never fails for want of room: the map makes room
            }
        }

        const int Edge = 1_000;
        Assert.Equal(OwnerCapacity, _dataplane.ListOwners().Count);
        Assert.All(Enumerable.Range(2 * OwnerCapacity - Edge, Edge), i => Assert.NotNull(_dataplane.GetOwner(EvictionFlow(i))));
        Assert.All(Enumerable.Range(0, Edge), i => Assert.Null(_dataplane.GetOwner(EvictionFlow(i))));

        // A recent flow is still tunnelled; an evicted one is a miss again (looked up anew, not reset).
        Assert.Equal(TcActRedirect, Run(Tcp(EvictionClient(2 * OwnerCapacity - 1), 40020, IPAddress.IPv6Loopback, 443, Ack)).Verdict);
        Assert.Equal(TcActShot, Run(Tcp(EvictionClient(0), 40020, IPAddress.IPv6Loopback, 443, Ack)).Verdict);
        RescueDataplaneCounters counters = _dataplane.ReadCounters();
        Assert.Equal(1UL, counters.Tunnelled);
        Assert.Equal(1UL, counters.Miss + counters.MissUnreported);
    }

    [Fact]
    public void A_full_owner_map_written_from_two_CPUs_outlives_order_only_by_the_last_batch_the_first_CPU_wrote()
    {
        IReadOnlyList<int> cpus = ThreadCpu.Allowed();
        Assert.True(cpus.Count >= 2, $"this test needs two CPUs to write from; the test host may use {cpus.Count}");
        using (ThreadCpu pin = ThreadCpu.PinTo(cpus[0]))
        {
            for (int i = 0; i < OwnerCapacity; i++)
            {
                _dataplane.SetOwner(EvictionFlow(i), Owner6);
            }

            pin.Set(cpus[1]);
            for (int i = OwnerCapacity; i < 2 * OwnerCapacity; i++)
            {
                _dataplane.SetOwner(EvictionFlow(i), Owner6);
            }
        }

        // The kernel's LRU hands each CPU its free entries in batches of 128 and puts the ones that CPU wrote into
        // the shared order only when it next needs a batch: the first CPU's last batch is never put there, so the
        // second CPU evicts everything else the first one wrote, and not that batch.
        const int Batch = 128;
        List<int> survivors = [.. _dataplane.ListOwners().Select(o => EvictionIndex(o.Flow.ClientAddress)).Where(i => i < OwnerCapacity).Order()];
        Assert.InRange(survivors.Count, 1, Batch);
        Assert.All(survivors, i => Assert.InRange(i, OwnerCapacity - Batch, OwnerCapacity - 1));
        Assert.All(Enumerable.Range(2 * OwnerCapacity - 1_000, 1_000), i => Assert.NotNull(_dataplane.GetOwner(EvictionFlow(i))));
    }

    private static IPAddress EvictionClient(int i)
    {
        byte[] address = IPAddress.Parse("2001:db8:c::").GetAddressBytes();
        BinaryPrimitives.WriteInt32BigEndian(address.AsSpan(12), i);
        return new IPAddress(address);
    }

    private static int EvictionIndex(IPAddress client) => BinaryPrimitives.ReadInt32BigEndian(client.GetAddressBytes().AsSpan(12));

    private static TcpFlow EvictionFlow(int i) => new(EvictionClient(i), 40020, IPAddress.IPv6Loopback, 443);

    private static (IPAddress Client, IPAddress Anycast, IPAddress Owner) Addresses(bool ipv6) =>
        ipv6 ? (Client6, IPAddress.IPv6Loopback, Owner6) : (Client4, IPAddress.Loopback, Owner4);

    private (int Verdict, byte[] Output) Run(byte[] frame, RescueDataplane? dataplane = null, bool ingress = true)
    {
        byte[] output = new byte[frame.Length + 128];
        int verdict = (dataplane ?? _dataplane).TestRun(ingress, frame, output, out int length, repeat: 1, out _);
        return (verdict, output[..length]);
    }

    private static RescueDataplane Configured(RescueDataplane dataplane)
    {
        dataplane.Configure(new RescueDataplaneConfig { LocalIPv4 = Local4, LocalIPv6 = Local6, MssIPv4 = 1440, MssIPv6 = 1400 }, enabled: true);
        dataplane.SetAnycast([IPAddress.Loopback, IPAddress.IPv6Loopback]);
        dataplane.SetPeers([Owner4, Owner6]);
        return dataplane;
    }

    /// <summary>A flow from 203.0.113.0/24 to the same server whose hint bit is <paramref name="flow"/>'s.</summary>
    private static TcpFlow CollidingFlow(TcpFlow flow)
    {
        uint bit = BpfFlowKey.From(flow).OwnerHintBit();
        for (int host = 1; host < 255; host++)
        {
            IPAddress client = IPAddress.Parse($"203.0.113.{host}");
            for (int port = 1; port < 65536; port++)
            {
                var candidate = new TcpFlow(client, port, flow.ServerAddress, flow.ServerPort);
                if (BpfFlowKey.From(candidate).OwnerHintBit() == bit)
                {
                    return candidate;
                }
            }
        }

        throw new InvalidOperationException($"no flow from 203.0.113.0/24 shares the hint bit {bit} of {flow}");
    }
}
