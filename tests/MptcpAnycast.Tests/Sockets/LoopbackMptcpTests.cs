using System.Net;
using System.Net.Sockets;
using System.Text;

namespace MptcpAnycast.Tests.Sockets;

public sealed class LoopbackMptcpTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    public static TheoryData<string> Loopbacks => new() { "127.0.0.1", "::1" };

    [Theory]
    [MemberData(nameof(Loopbacks))]
    public async Task Mptcp_client_and_listener_both_see_mptcp_with_nonzero_tokens(string address)
    {
        using var cts = new CancellationTokenSource(Timeout);
        using Socket listener = MptcpSocket.CreateListener(new IPEndPoint(IPAddress.Parse(address), 0));
        using Socket client = MptcpSocket.Create(listener.AddressFamily);

        Task<Socket> accept = listener.AcceptAsync(cts.Token).AsTask();
        await client.ConnectAsync(listener.LocalEndPoint!, cts.Token);
        using Socket server = await accept.WaitAsync(cts.Token);
        await ExchangeAsync(client, server, cts.Token);

        MptcpConnectionInfo serverInfo = MptcpSocket.GetConnectionInfo(server);
        MptcpConnectionInfo clientInfo = MptcpSocket.GetConnectionInfo(client);

        Assert.True(MptcpSocket.IsMptcpSocket(server));
        Assert.True(serverInfo.IsMptcp, serverInfo.ToString());
        Assert.True(clientInfo.IsMptcp, clientInfo.ToString());
        Assert.NotEqual(0u, serverInfo.Token);
        Assert.NotEqual(0u, clientInfo.Token);
        Assert.Equal(MptcpFallbackReason.None, serverInfo.FallbackReason);
        Assert.True(clientInfo.BytesSent >= 5 || clientInfo.WriteSequence > 0);
    }

    [Theory]
    [MemberData(nameof(Loopbacks))]
    public async Task Plain_tcp_client_on_mptcp_listener_is_seen_as_fallen_back(string address)
    {
        using var cts = new CancellationTokenSource(Timeout);
        using Socket listener = MptcpSocket.CreateListener(new IPEndPoint(IPAddress.Parse(address), 0));
        using var client = new Socket(listener.AddressFamily, SocketType.Stream, ProtocolType.Tcp);

        Task<Socket> accept = listener.AcceptAsync(cts.Token).AsTask();
        await client.ConnectAsync(listener.LocalEndPoint!, cts.Token);
        using Socket server = await accept.WaitAsync(cts.Token);
        await ExchangeAsync(client, server, cts.Token);

        MptcpConnectionInfo info = MptcpSocket.GetConnectionInfo(server);

        Assert.False(MptcpSocket.IsMptcpSocket(server));
        Assert.False(info.IsMptcp);
        Assert.Equal(MptcpFallbackReason.PlainTcpSocket, info.FallbackReason);
        Assert.Equal(0u, info.Token);
        MptcpSubflow path = Assert.Single(MptcpSocket.GetSubflows(server));
        Assert.Equal(((IPEndPoint)client.LocalEndPoint!).Port, path.Remote.Port);
    }

    [Theory]
    [MemberData(nameof(Loopbacks))]
    public async Task Mptcp_client_on_plain_tcp_listener_reports_fallback(string address)
    {
        using var cts = new CancellationTokenSource(Timeout);
        using var listener = new Socket(IPAddress.Parse(address).AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Parse(address), 0));
        listener.Listen();
        using Socket client = MptcpSocket.Create(listener.AddressFamily);

        Task<Socket> accept = listener.AcceptAsync(cts.Token).AsTask();
        await client.ConnectAsync(listener.LocalEndPoint!, cts.Token);
        using Socket server = await accept.WaitAsync(cts.Token);
        await ExchangeAsync(client, server, cts.Token);

        MptcpConnectionInfo info = MptcpSocket.GetConnectionInfo(client);

        Assert.True(MptcpSocket.IsMptcpSocket(client));
        Assert.False(info.IsMptcp);
        Assert.Equal(MptcpFallbackReason.FellBackToTcp, info.FallbackReason);
    }

    [Theory]
    [MemberData(nameof(Loopbacks))]
    public async Task Subflow_addresses_name_both_ends_of_the_initial_subflow(string address)
    {
        using var cts = new CancellationTokenSource(Timeout);
        using Socket listener = MptcpSocket.CreateListener(new IPEndPoint(IPAddress.Parse(address), 0));
        using Socket client = MptcpSocket.Create(listener.AddressFamily);

        Task<Socket> accept = listener.AcceptAsync(cts.Token).AsTask();
        await client.ConnectAsync(listener.LocalEndPoint!, cts.Token);
        using Socket server = await accept.WaitAsync(cts.Token);

        MptcpSubflow subflow = Assert.Single(MptcpSocket.GetSubflows(server));
        Assert.Equal(((IPEndPoint)listener.LocalEndPoint!).Port, subflow.Local.Port);
        Assert.Equal(((IPEndPoint)client.LocalEndPoint!).Port, subflow.Remote.Port);
        Assert.Equal(IPAddress.Parse(address), subflow.Local.Address);
    }

    [Fact]
    public async Task Dual_mode_listener_accepts_an_ipv4_mptcp_client()
    {
        using var cts = new CancellationTokenSource(Timeout);
        using Socket listener = MptcpSocket.CreateListener(new IPEndPoint(IPAddress.IPv6Any, 0));
        using Socket client = MptcpSocket.Create(AddressFamily.InterNetwork);
        int port = ((IPEndPoint)listener.LocalEndPoint!).Port;

        Task<Socket> accept = listener.AcceptAsync(cts.Token).AsTask();
        await client.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), cts.Token);
        using Socket server = await accept.WaitAsync(cts.Token);

        Assert.True(listener.DualMode);
        Assert.True(MptcpSocket.GetConnectionInfo(server).IsMptcp);
    }

    [Fact]
    public void Support_check_on_this_host_reports_supported()
    {
        MptcpSupport support = MptcpSocket.CheckSupport();
        Assert.True(support.IsSupported, support.Message);
        Assert.Equal(MptcpUnsupportedReason.None, support.Reason);
        Assert.True(MptcpSocket.IsSupported);
    }

    [Fact]
    public void Unsupported_address_family_is_rejected_by_name()
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => MptcpSocket.Create(AddressFamily.Unix));
        Assert.Contains("Unix", ex.Message);
    }

    [Fact]
    public async Task A_listener_binds_again_while_its_old_connections_are_in_time_wait()
    {
        // A server that closes first (Connection: close) leaves TIME_WAIT on its port for a minute; a restarted server
        // must still bind, as Kestrel's own transport does (SO_REUSEADDR).
        var port = new IPEndPoint(IPAddress.Loopback, 0);
        IPEndPoint bound;
        using (Socket first = MptcpSocket.CreateListener(port))
        {
            bound = (IPEndPoint)first.LocalEndPoint!;
            using Socket client = MptcpSocket.Create(AddressFamily.InterNetwork);
            await client.ConnectAsync(bound);
            using Socket server = await first.AcceptAsync();
            server.Shutdown(SocketShutdown.Both);
            server.Close(); // the server closes first: TIME_WAIT is on its side
            Assert.Equal(0, await client.ReceiveAsync(new byte[1], SocketFlags.None));
        }

        await Task.Delay(200);
        using Socket second = MptcpSocket.CreateListener(bound);
        Assert.Equal(bound, second.LocalEndPoint);
    }

    private static async Task ExchangeAsync(Socket client, Socket server, CancellationToken cancellationToken)
    {
        await client.SendAsync(Encoding.ASCII.GetBytes("hello"), cancellationToken);
        byte[] buffer = new byte[5];
        int read = 0;
        while (read < 5)
        {
            int n = await server.ReceiveAsync(buffer.AsMemory(read), cancellationToken);
            Assert.NotEqual(0, n);
            read += n;
        }

        Assert.Equal("hello", Encoding.ASCII.GetString(buffer));
    }
}
