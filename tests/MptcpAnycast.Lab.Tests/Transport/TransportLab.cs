using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;
using MptcpAnycast.Lab.Tests.Infrastructure;

namespace MptcpAnycast.Lab.Tests.Transport;

/// <summary>
/// Client and server namespaces joined by one link. The server holds the anycast addresses on <c>lo</c>
/// (203.0.113.1, 2001:db8:a::1) and its unicast address on the link (192.0.2.2, 2001:db8:1::2); the client
/// (192.0.2.1, 2001:db8:1::1) routes the anycast addresses to it.
/// </summary>
public sealed class TransportLab : IDisposable
{
    public static readonly IPAddress Anycast4 = IPAddress.Parse("203.0.113.1");
    public static readonly IPAddress Anycast6 = IPAddress.Parse("2001:db8:a::1");
    public static readonly IPAddress Unicast4 = IPAddress.Parse("192.0.2.2");
    public static readonly IPAddress Unicast6 = IPAddress.Parse("2001:db8:1::2");
    private static int s_links;

    /// <param name="serverPathManager"><c>userspace</c> or <c>kernel</c>.</param>
    /// <param name="clientAddAddrAccepted">The client's <c>add_addr_accepted</c> limit (0 is the kernel default).</param>
    /// <param name="clientSubflowEndpoint">A second client address with a <c>subflow</c> endpoint (the C-flag case), or null.</param>
    public TransportLab(string serverPathManager, int clientAddAddrAccepted = 1, string? clientSubflowEndpoint = null)
    {
        Client = new TestNamespace("cli");
        Server = new TestNamespace("srv");
        try
        {
            string link = $"tl{Environment.ProcessId % 100000}x{Interlocked.Increment(ref s_links)}";
            Shell.Run("ip", $"link add {link}c netns {Client.Name} type veth peer name {link}s netns {Server.Name}");
            foreach (TestNamespace ns in new[] { Client, Server })
            {
                ns.Sysctl("net.ipv6.conf.all.accept_dad", "0");
                ns.Sysctl("net.ipv6.conf.default.accept_dad", "0");
            }

            Client.Exec($"ip addr add 192.0.2.1/24 dev {link}c && ip addr add 2001:db8:1::1/64 dev {link}c nodad && ip link set {link}c up");
            Client.Exec($"ip route add {Anycast4}/32 via {Unicast4} && ip -6 route add {Anycast6}/128 via {Unicast6}");
            Client.Exec($"ip mptcp limits set add_addr_accepted {clientAddAddrAccepted} subflows 2");
            if (clientSubflowEndpoint is not null)
            {
                Client.Exec($"ip addr add {clientSubflowEndpoint}/24 dev {link}c && ip mptcp endpoint add {clientSubflowEndpoint} dev {link}c subflow");
            }

            Server.Exec($"ip addr add {Unicast4}/24 dev {link}s && ip addr add {Unicast6}/64 dev {link}s nodad && ip link set {link}s up");
            Server.Exec($"ip addr add {Anycast4}/32 dev lo && ip addr add {Anycast6}/128 dev lo nodad");
            Server.Sysctl("net.mptcp.path_manager", serverPathManager);
            Server.Sysctl("net.mptcp.allow_join_initial_addr_port", "0");
            Server.Exec("ip mptcp limits set subflows 2 add_addr_accepted 0");
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public TestNamespace Client { get; }

    public TestNamespace Server { get; }

    /// <summary>An HttpClient whose MPTCP (or TCP) sockets live in the client namespace.</summary>
    public HttpClient CreateClient(bool mptcp = true, bool dualStack = false)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (context, cancellationToken) =>
            {
                var target = new IPEndPoint(IPAddress.Parse(context.DnsEndPoint.Host.Trim('[', ']')), context.DnsEndPoint.Port);
                Socket socket = Client.Run(() =>
                {
                    if (!mptcp)
                    {
                        return new Socket(target.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                    }

                    Socket s = MptcpSocket.Create(dualStack ? AddressFamily.InterNetworkV6 : target.AddressFamily);
                    if (dualStack)
                    {
                        s.DualMode = true;
                    }

                    return s;
                });
                try
                {
                    IPEndPoint connectTo = dualStack && target.AddressFamily == AddressFamily.InterNetwork ? new IPEndPoint(target.Address.MapToIPv6(), target.Port) : target;
                    await socket.ConnectAsync(connectTo, cancellationToken);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        };
        return new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(20) };
    }

    /// <summary>GET /mptcp, parsed.</summary>
    public static async Task<JsonElement> GetStateAsync(HttpClient client, string baseUri)
        => await client.GetFromJsonAsync<JsonElement>($"{baseUri}/mptcp");

    /// <summary>Polls /mptcp on the same connection until <paramref name="state"/> or the timeout.</summary>
    public static async Task<JsonElement> WaitForStateAsync(HttpClient client, string baseUri, string state, int timeoutMs = 5000)
    {
        DateTime deadline = DateTime.UtcNow.AddMilliseconds(timeoutMs);
        while (true)
        {
            JsonElement json = await GetStateAsync(client, baseUri);
            if (json.GetProperty("state").GetString() == state || DateTime.UtcNow > deadline)
            {
                return json;
            }

            await Task.Delay(50);
        }
    }

    public void Dispose()
    {
        Client.Dispose();
        Server.Dispose();
    }
}
