using System.Net;
using System.Net.Sockets;
using System.Text;

namespace MptcpAnycast.Tests.Sockets;

public sealed class MptcpHttpTests
{
    [Theory]
    [InlineData("127.0.0.1", true)]
    [InlineData("127.0.0.1", false)]
    [InlineData("::1", true)]
    public async Task Http_client_from_the_handler_connects_over_mptcp(string address, bool dualStack)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        using Socket listener = MptcpSocket.CreateListener(new IPEndPoint(IPAddress.Parse(address), 0));
        var endPoint = (IPEndPoint)listener.LocalEndPoint!;
        Task<(bool IsMptcp, string Request)> server = ServeOneAsync(listener, cts.Token);

        using var client = new HttpClient(MptcpHttp.CreateHandler(MptcpFallback.None, dualStack));
        string host = endPoint.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{address}]" : address;
        string body = await client.GetStringAsync($"http://{host}:{endPoint.Port}/hello", cts.Token);

        (bool isMptcp, string request) = await server.WaitAsync(cts.Token);
        Assert.Equal("mptcp", body);
        Assert.True(isMptcp);
        Assert.StartsWith("GET /hello HTTP/1.1", request);
    }

    [Fact]
    public async Task Connect_reaches_a_host_name()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        using Socket listener = MptcpSocket.CreateListener(new IPEndPoint(IPAddress.Loopback, 0));
        int port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        Task<Socket> accept = listener.AcceptAsync(cts.Token).AsTask();

        using Socket client = await MptcpHttp.ConnectAsync(new DnsEndPoint("localhost", port), MptcpFallback.None, cancellationToken: cts.Token);
        using Socket server = await accept.WaitAsync(cts.Token);

        Assert.True(MptcpSocket.GetConnectionInfo(client).IsMptcp);
        // Each end has its own token (a hash of its own key).
        Assert.NotEqual(0u, MptcpSocket.GetConnectionInfo(client).Token);
        Assert.NotEqual(0u, MptcpSocket.GetConnectionInfo(server).Token);
    }

    private static async Task<(bool IsMptcp, string Request)> ServeOneAsync(Socket listener, CancellationToken cancellationToken)
    {
        using Socket connection = await listener.AcceptAsync(cancellationToken);
        var request = new StringBuilder();
        byte[] buffer = new byte[4096];
        while (!request.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
        {
            int n = await connection.ReceiveAsync(buffer, cancellationToken);
            if (n == 0)
            {
                break;
            }

            request.Append(Encoding.ASCII.GetString(buffer, 0, n));
        }

        bool isMptcp = MptcpSocket.GetConnectionInfo(connection).IsMptcp;
        await connection.SendAsync(Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nmptcp"), cancellationToken);
        return (isMptcp, request.ToString());
    }
}
