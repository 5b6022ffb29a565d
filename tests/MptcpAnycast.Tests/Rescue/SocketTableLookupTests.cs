using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Interop;
using MptcpAnycast.Netlink;
using MptcpAnycast.Rescue;
using MptcpAnycast.Rescue.Ownership;

namespace MptcpAnycast.Tests.Rescue;

/// <summary>The kernel's own answer to "is this flow mine?", asked on loopback, and the answer parser on crafted bytes.</summary>
public sealed class SocketTableLookupTests
{
    public static TheoryData<string> Loopbacks => new() { "127.0.0.1", "::1" };

    [Theory]
    [MemberData(nameof(Loopbacks))]
    public async Task An_established_connection_is_owned(string address)
    {
        using TcpPair pair = await TcpPair.ConnectAsync(IPAddress.Parse(address), IPAddress.Parse(address));
        using SocketTableLookup lookup = SocketTableLookup.Open();

        SocketOwnership ownership = lookup.Lookup(pair.Flow);

        Assert.True(ownership.IsOwned, ownership.ToString());
        Assert.Equal(TcpState.Established, ownership.State);
    }

    [Theory]
    [MemberData(nameof(Loopbacks))]
    public async Task The_lookup_finds_the_server_end_of_the_flow(string address)
    {
        // On loopback both ends are local; a half-close gives them different states, which tells them apart.
        using TcpPair pair = await TcpPair.ConnectAsync(IPAddress.Parse(address), IPAddress.Parse(address));
        using SocketTableLookup lookup = SocketTableLookup.Open();
        pair.Client.Shutdown(SocketShutdown.Send);
        Assert.Equal(0, await pair.Server.ReceiveAsync(new byte[1], SocketFlags.None).WithTimeout(what: "the client's FIN"));

        await Eventually.TrueAsync(() => lookup.Lookup(pair.Flow).State == TcpState.CloseWait, "the server end in CLOSE_WAIT");
        await Eventually.TrueAsync(() => lookup.Lookup(Reversed(pair.Flow)).State == TcpState.FinWait2, "the client end in FIN_WAIT2");
        Assert.True(lookup.Lookup(pair.Flow).IsOwned);
    }

    [Theory]
    [MemberData(nameof(Loopbacks))]
    public async Task A_flow_with_no_socket_is_not_owned(string address)
    {
        using TcpPair pair = await TcpPair.ConnectAsync(IPAddress.Parse(address), IPAddress.Parse(address));
        pair.Listener.Dispose();
        using SocketTableLookup lookup = SocketTableLookup.Open();
        TcpFlow other = new(pair.Flow.ClientAddress, pair.Flow.ClientPort ^ 1, pair.Flow.ServerAddress, pair.Flow.ServerPort);

        Assert.Equal(SocketOwnership.NoSocket, lookup.Lookup(other));
        Assert.True(lookup.Lookup(pair.Flow).IsOwned); // the same lookup does see the connection itself
    }

    public static TheoryData<string, string> Listeners => new()
    {
        { "127.0.0.1", "127.0.0.1" },
        { "0.0.0.0", "127.0.0.1" },
        { "::1", "::1" },
        { "::", "::1" },
        { "::", "127.0.0.1" }, // dual-stack listener, IPv4 flow
    };

    [Theory]
    [MemberData(nameof(Listeners))]
    public async Task A_listener_on_the_port_does_not_own_another_connection(string listenOn, string connectTo)
    {
        // The kernel's exact lookup falls back to the listener when no connection matches; that must read as "not mine".
        using TcpPair pair = await TcpPair.ConnectAsync(IPAddress.Parse(listenOn), IPAddress.Parse(connectTo));
        using SocketTableLookup lookup = SocketTableLookup.Open();
        TcpFlow stranger = new(pair.Flow.ClientAddress, pair.Flow.ClientPort ^ 1, pair.Flow.ServerAddress, pair.Flow.ServerPort);

        SocketOwnership ownership = lookup.Lookup(stranger);

        Assert.Equal(SocketOwnership.ListenerOnly, ownership);
        Assert.False(ownership.IsOwned);
        Assert.True(lookup.Lookup(pair.Flow).IsOwned);
    }

    [Theory]
    [MemberData(nameof(Loopbacks))]
    public async Task A_server_end_in_time_wait_is_owned(string address)
    {
        using TcpPair pair = await TcpPair.ConnectAsync(IPAddress.Parse(address), IPAddress.Parse(address));
        using SocketTableLookup lookup = SocketTableLookup.Open();

        // The server closes first, so the server end keeps TIME_WAIT and the client end goes through LAST_ACK to nothing.
        pair.Server.Shutdown(SocketShutdown.Both);
        pair.Server.Dispose();
        Assert.Equal(0, await pair.Client.ReceiveAsync(new byte[1], SocketFlags.None).WithTimeout(what: "the server's FIN"));
        pair.Client.Dispose();

        await Eventually.TrueAsync(() => lookup.Lookup(pair.Flow).State == TcpState.TimeWait, "the server end in TIME_WAIT");
        Assert.True(lookup.Lookup(pair.Flow).IsOwned);
        await Eventually.TrueAsync(() => lookup.Lookup(Reversed(pair.Flow)) == SocketOwnership.NoSocket, "the client end gone");
    }

    [Theory]
    [MemberData(nameof(Loopbacks))]
    public async Task An_mptcp_connection_is_owned_through_its_subflow(string address)
    {
        using LoopbackPair pair = await LoopbackPair.ConnectAsync(IPAddress.Parse(address).AddressFamily);
        await pair.ExchangeAsync();
        Assert.True(MptcpSocket.GetConnectionInfo(pair.Server).IsMptcp);
        using SocketTableLookup lookup = SocketTableLookup.Open();

        SocketOwnership ownership = lookup.Lookup(FlowOf(pair.Server));

        Assert.True(ownership.IsOwned, ownership.ToString());
        Assert.Equal(TcpState.Established, ownership.State);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task An_ipv4_connection_on_a_dual_stack_socket_is_owned(bool mptcp)
    {
        using var listener = mptcp
            ? MptcpSocket.CreateListener(new IPEndPoint(IPAddress.IPv6Any, 0))
            : TcpPair.Listen(IPAddress.IPv6Any);
        using var client = mptcp ? MptcpSocket.Create(AddressFamily.InterNetwork) : new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        Task<Socket> accept = listener.AcceptAsync().WithTimeout(what: "accept");
        await client.ConnectAsync(new IPEndPoint(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndPoint!).Port)).WithTimeout(what: "connect");
        using Socket server = await accept;
        Assert.Equal(AddressFamily.InterNetworkV6, server.AddressFamily);
        Assert.True(((IPEndPoint)server.LocalEndPoint!).Address.IsIPv4MappedToIPv6);
        using SocketTableLookup lookup = SocketTableLookup.Open();
        TcpFlow flow = FlowOf(server);
        Assert.False(flow.IsIPv6);

        SocketOwnership ownership = lookup.Lookup(flow);

        Assert.True(ownership.IsOwned, ownership.ToString());
        Assert.Equal(TcpState.Established, ownership.State);
    }

    [Fact]
    public async Task Lookups_from_several_threads_each_get_their_own_answer()
    {
        using TcpPair first = await TcpPair.ConnectAsync(IPAddress.Loopback, IPAddress.Loopback);
        using TcpPair second = await TcpPair.ConnectAsync(IPAddress.IPv6Loopback, IPAddress.IPv6Loopback);
        TcpFlow stranger = new(first.Flow.ClientAddress, first.Flow.ClientPort ^ 1, first.Flow.ServerAddress, first.Flow.ServerPort);
        using SocketTableLookup lookup = SocketTableLookup.Open();

        int wrong = 0;
        await Task.WhenAll(Enumerable.Range(0, 4).Select(t => Task.Run(() =>
        {
            for (int i = 0; i < 500; i++)
            {
                bool right = (i % 3) switch
                {
                    0 => lookup.Lookup(first.Flow).State == TcpState.Established,
                    1 => lookup.Lookup(second.Flow).State == TcpState.Established,
                    _ => lookup.Lookup(stranger) == SocketOwnership.ListenerOnly,
                };
                if (!right)
                {
                    Interlocked.Increment(ref wrong);
                }
            }
        }))).WithTimeout();

        Assert.Equal(0, wrong);
    }

    [Fact]
    public void A_disposed_lookup_refuses()
    {
        SocketTableLookup lookup = SocketTableLookup.Open();
        lookup.Dispose();
        Assert.Throws<ObjectDisposedException>(() => lookup.Lookup(V4Flow));
    }

    // --- The request and the answer parser, on bytes -------------------------------------------------------------

    private static readonly TcpFlow V4Flow = new(IPAddress.Parse("192.0.2.7"), 40000, IPAddress.Parse("203.0.113.1"), 443);
    private static readonly TcpFlow V6Flow = new(IPAddress.Parse("2001:db8::7"), 40000, IPAddress.Parse("2001:db8:1::1"), 443);

    [Fact]
    public void The_request_keys_the_server_end_as_source()
    {
        byte[] buffer = new byte[128];
        int length = SocketTableLookup.WriteLookupRequest(buffer, 42, V4Flow);

        Assert.Equal(16 + 56, length);
        Assert.Equal((uint)length, BinaryPrimitives.ReadUInt32LittleEndian(buffer));
        Assert.Equal(SockDiagConstants.SOCK_DIAG_BY_FAMILY, BinaryPrimitives.ReadUInt16LittleEndian(buffer.AsSpan(4)));
        Assert.Equal(NetlinkConstants.NLM_F_REQUEST, BinaryPrimitives.ReadUInt16LittleEndian(buffer.AsSpan(6))); // no NLM_F_DUMP
        Assert.Equal(42u, BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(8)));
        ReadOnlySpan<byte> request = buffer.AsSpan(16, 56);
        Assert.Equal(MptcpConstants.AF_INET, request[0]);
        Assert.Equal(MptcpConstants.IPPROTO_TCP, request[1]);
        ReadOnlySpan<byte> id = request[8..];
        Assert.Equal(443, BinaryPrimitives.ReadUInt16BigEndian(id));
        Assert.Equal(40000, BinaryPrimitives.ReadUInt16BigEndian(id[2..]));
        Assert.Equal(new byte[] { 203, 0, 113, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, id.Slice(4, 16).ToArray());
        Assert.Equal(new byte[] { 192, 0, 2, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, id.Slice(20, 16).ToArray());
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(id[36..]));
        Assert.Equal(new byte[] { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, id.Slice(40, 8).ToArray());

        SocketTableLookup.WriteLookupRequest(buffer, 43, V6Flow);
        Assert.Equal(MptcpConstants.AF_INET6, buffer[16]);
        Assert.Equal(IPAddress.Parse("2001:db8:1::1").GetAddressBytes(), buffer.AsSpan(16 + 8 + 4, 16).ToArray());
        Assert.Equal(IPAddress.Parse("2001:db8::7").GetAddressBytes(), buffer.AsSpan(16 + 8 + 20, 16).ToArray());
    }

    public static TheoryData<byte> OwnedStates => new()
    {
        TcpStates.TCP_ESTABLISHED,
        TcpStates.TCP_SYN_SENT,
        TcpStates.TCP_SYN_RECV,
        TcpStates.TCP_FIN_WAIT1,
        TcpStates.TCP_FIN_WAIT2,
        TcpStates.TCP_TIME_WAIT,
        TcpStates.TCP_CLOSE_WAIT,
        TcpStates.TCP_LAST_ACK,
        TcpStates.TCP_CLOSING,
        TcpStates.TCP_NEW_SYN_RECV,
    };

    [Theory]
    [MemberData(nameof(OwnedStates))]
    public void A_reported_connection_is_owned_in_its_state(byte state)
    {
        SocketOwnership ownership = Read(Answer(V4Flow, state: state), V4Flow);
        Assert.True(ownership.IsOwned);
        Assert.Equal(state, (byte)ownership.State);
        Assert.Equal(ownership, Read(Answer(V6Flow, state: state), V6Flow));
    }

    [Fact]
    public void A_reported_listener_is_not_owned_though_its_remote_end_is_empty()
    {
        byte[] answer = Answer(V4Flow, state: TcpStates.TCP_LISTEN, remote: IPAddress.Any, remotePort: 0, local: IPAddress.Any);
        Assert.Equal(SocketOwnership.ListenerOnly, Read(answer, V4Flow));
        Assert.Equal(SocketOwnership.ListenerOnly, Read(Answer(V6Flow, state: TcpStates.TCP_LISTEN, remote: IPAddress.IPv6Any, remotePort: 0), V6Flow));
    }

    [Fact]
    public void A_closed_socket_is_not_owned()
    {
        SocketOwnership ownership = Read(Answer(V4Flow, state: TcpStates.TCP_CLOSE), V4Flow);
        Assert.False(ownership.IsOwned);
        Assert.Equal(TcpState.Close, ownership.State);
    }

    [Fact]
    public void A_dual_stack_socket_reports_an_ipv4_flow_as_v4_mapped()
    {
        byte[] answer = Answer(V4Flow, family: MptcpConstants.AF_INET6,
            local: V4Flow.ServerAddress.MapToIPv6(), remote: V4Flow.ClientAddress.MapToIPv6());
        Assert.Equal(SocketOwnership.Of(TcpState.Established), Read(answer, V4Flow));

        byte[] unmapped = Answer(V4Flow, family: MptcpConstants.AF_INET6,
            local: IPAddress.Parse("::cb00:7101"), remote: V4Flow.ClientAddress.MapToIPv6());
        Assert.Contains("local address", Assert.Throws<NetlinkFormatException>(() => Read(unmapped, V4Flow)).Message);
    }

    [Fact]
    public void Enoent_means_no_socket()
    {
        Assert.Equal(SocketOwnership.NoSocket, Read(Error(seq: 5, error: -Errno.ENOENT), V4Flow, seq: 5));
    }

    [Fact]
    public void Another_kernel_error_is_a_netlink_exception_with_its_errno()
    {
        var ex = Assert.Throws<NetlinkException>(() => Read(Error(seq: 5, error: -Errno.EINVAL), V4Flow, seq: 5));
        Assert.Equal(Errno.EINVAL, ex.Errno);
        Assert.Contains(V4Flow.ToString(), ex.Message);
    }

    [Fact]
    public void An_acknowledgement_without_a_socket_is_malformed()
    {
        Assert.Throws<NetlinkFormatException>(() => Read(Error(seq: 5, error: 0), V4Flow, seq: 5));
    }

    [Fact]
    public void An_answer_to_another_request_is_skipped()
    {
        byte[] stale = Answer(V4Flow, seq: 4, state: TcpStates.TCP_LISTEN);
        Assert.False(SocketTableLookup.TryReadLookupAnswer(stale, 5, V4Flow, out _));
        Assert.False(SocketTableLookup.TryReadLookupAnswer(Error(seq: 4, error: -Errno.ENOENT), 5, V4Flow, out _));

        // A stale answer and the right one in one datagram: the right one counts.
        byte[] both = [.. stale, .. Answer(V4Flow, seq: 5)];
        Assert.True(SocketTableLookup.TryReadLookupAnswer(both, 5, V4Flow, out SocketOwnership ownership));
        Assert.Equal(TcpState.Established, ownership.State);
    }

    public static TheoryData<string, byte[], string> Malformed
    {
        get
        {
            byte[] good = Answer(V4Flow);
            byte[] longer = (byte[])good.Clone();
            BinaryPrimitives.WriteUInt32LittleEndian(longer, (uint)good.Length + 4);
            byte[] short40 = Answer(V4Flow, payloadLength: 40);
            return new()
            {
                { "empty header", good[..10], "truncated netlink header: 10" },
                { "length past the datagram", longer, $"length {good.Length + 4}" },
                { "short inet_diag_msg", short40, "inet_diag_msg of 40 bytes" },
                { "wrong type", Answer(V4Flow, type: 18), "message type 18" },
                { "NLMSG_DONE", Answer(V4Flow, type: NetlinkConstants.NLMSG_DONE), "message type 3" },
                { "wrong local port", Answer(V4Flow, localPort: 444), "local port 444" },
                { "wrong remote port", Answer(V4Flow, remotePort: 40001), "remote port 40001" },
                { "wrong local address", Answer(V4Flow, local: IPAddress.Parse("203.0.113.2")), "local address 203.0.113.2" },
                { "wrong remote address", Answer(V4Flow, remote: IPAddress.Parse("192.0.2.8")), "remote address 192.0.2.8" },
                { "unknown family", Answer(V4Flow, family: 7), "address family 7" },
                { "state 0", Answer(V4Flow, state: 0), "TCP state 0" },
                { "state 42", Answer(V4Flow, state: 42), "TCP state 42" },
                { "short error", Message(NetlinkConstants.NLMSG_ERROR, 5, [1, 0]), "no error code" },
            };
        }
    }

    [Theory]
    [MemberData(nameof(Malformed))]
    public void A_malformed_answer_is_a_format_exception_naming_the_bad_value(string what, byte[] datagram, string named)
    {
        var ex = Assert.Throws<NetlinkFormatException>(() => Read(datagram, V4Flow));
        Assert.True(ex.Message.Contains(named, StringComparison.Ordinal), $"{what}: {ex.Message}");
    }

    [Fact]
    public void An_ipv4_socket_answering_an_ipv6_lookup_is_malformed()
    {
        byte[] answer = Answer(V6Flow, family: MptcpConstants.AF_INET);
        Assert.Contains("address family 2", Assert.Throws<NetlinkFormatException>(() => Read(answer, V6Flow)).Message);
        Assert.Contains("remote address 2001:db8::8",
            Assert.Throws<NetlinkFormatException>(() => Read(Answer(V6Flow, remote: IPAddress.Parse("2001:db8::8")), V6Flow)).Message);
    }

    [Fact]
    public void Random_bytes_never_escape_as_anything_but_the_two_netlink_exceptions()
    {
        var random = new Random(1234);
        byte[] good = Answer(V4Flow);
        for (int i = 0; i < 20_000; i++)
        {
            byte[] datagram = (byte[])good.Clone();
            int flips = random.Next(1, 6);
            for (int f = 0; f < flips; f++)
            {
                datagram[random.Next(datagram.Length)] = (byte)random.Next(256);
            }

            datagram = datagram[..random.Next(datagram.Length + 1)];
            try
            {
                SocketTableLookup.TryReadLookupAnswer(datagram, 5, V4Flow, out _);
            }
            catch (Exception ex) when (ex is NetlinkFormatException or NetlinkException)
            {
            }
        }
    }

    private static SocketOwnership Read(byte[] datagram, TcpFlow flow, uint seq = 5)
    {
        Assert.True(SocketTableLookup.TryReadLookupAnswer(datagram, seq, flow, out SocketOwnership ownership));
        return ownership;
    }

    /// <summary>A kernel-style answer: nlmsghdr, inet_diag_msg reporting the flow's server end (overridable), no attributes.</summary>
    private static byte[] Answer(
        TcpFlow flow, uint seq = 5, ushort type = SockDiagConstants.SOCK_DIAG_BY_FAMILY, byte? family = null, byte state = TcpStates.TCP_ESTABLISHED,
        IPAddress? local = null, int? localPort = null, IPAddress? remote = null, int? remotePort = null, int payloadLength = InetDiagMsgLayout.Size)
    {
        byte[] payload = new byte[InetDiagMsgLayout.Size];
        payload[InetDiagMsgLayout.idiag_family] = family ?? (byte)(flow.IsIPv6 ? MptcpConstants.AF_INET6 : MptcpConstants.AF_INET);
        payload[InetDiagMsgLayout.idiag_state] = state;
        Span<byte> id = payload.AsSpan(InetDiagMsgLayout.id, InetDiagSockIdLayout.Size);
        BinaryPrimitives.WriteUInt16BigEndian(id[InetDiagSockIdLayout.idiag_sport..], (ushort)(localPort ?? flow.ServerPort));
        BinaryPrimitives.WriteUInt16BigEndian(id[InetDiagSockIdLayout.idiag_dport..], (ushort)(remotePort ?? flow.ClientPort));
        (local ?? flow.ServerAddress).GetAddressBytes().CopyTo(id[InetDiagSockIdLayout.idiag_src..]);
        (remote ?? flow.ClientAddress).GetAddressBytes().CopyTo(id[InetDiagSockIdLayout.idiag_dst..]);
        return Message(type, seq, payload[..payloadLength]);
    }

    private static byte[] Error(uint seq, int error)
    {
        byte[] payload = new byte[4 + 16]; // int error, then the request's header (NLM_F_CAPPED)
        BinaryPrimitives.WriteInt32LittleEndian(payload, error);
        return Message(NetlinkConstants.NLMSG_ERROR, seq, payload, NetlinkConstants.NLM_F_CAPPED);
    }

    private static byte[] Message(ushort type, uint seq, byte[] payload, ushort flags = 0)
    {
        byte[] message = new byte[16 + ((payload.Length + 3) & ~3)];
        BinaryPrimitives.WriteUInt32LittleEndian(message, (uint)(16 + payload.Length));
        BinaryPrimitives.WriteUInt16LittleEndian(message.AsSpan(4), type);
        BinaryPrimitives.WriteUInt16LittleEndian(message.AsSpan(6), flags);
        BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(8), seq);
        payload.CopyTo(message, 16);
        return message;
    }

    private static TcpFlow FlowOf(Socket server)
    {
        var local = (IPEndPoint)server.LocalEndPoint!;
        var remote = (IPEndPoint)server.RemoteEndPoint!;
        return new TcpFlow(remote.Address, remote.Port, local.Address, local.Port);
    }

    private static TcpFlow Reversed(TcpFlow flow) => new(flow.ServerAddress, flow.ServerPort, flow.ClientAddress, flow.ClientPort);

    /// <summary>One plain TCP connection on loopback; the flow is the server's view (client to server).</summary>
    private sealed class TcpPair : IDisposable
    {
        private TcpPair(Socket listener, Socket client, Socket server)
        {
            Listener = listener;
            Client = client;
            Server = server;
            Flow = FlowOf(server);
        }

        public Socket Listener { get; }

        public Socket Client { get; }

        public Socket Server { get; }

        public TcpFlow Flow { get; }

        public static Socket Listen(IPAddress address)
        {
            var listener = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                if (address.Equals(IPAddress.IPv6Any))
                {
                    listener.DualMode = true;
                }

                listener.Bind(new IPEndPoint(address, 0));
                listener.Listen();
                return listener;
            }
            catch
            {
                listener.Dispose();
                throw;
            }
        }

        public static async Task<TcpPair> ConnectAsync(IPAddress listenOn, IPAddress connectTo)
        {
            Socket listener = Listen(listenOn);
            var client = new Socket(connectTo.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                Task<Socket> accept = listener.AcceptAsync().WithTimeout(what: "accept on loopback");
                await client.ConnectAsync(new IPEndPoint(connectTo, ((IPEndPoint)listener.LocalEndPoint!).Port)).WithTimeout(what: "connect on loopback");
                return new TcpPair(listener, client, await accept);
            }
            catch
            {
                client.Dispose();
                listener.Dispose();
                throw;
            }
        }

        public void Dispose()
        {
            Server.Dispose();
            Client.Dispose();
            Listener.Dispose();
        }
    }
}
