using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;
using MptcpAnycast.Lab.Tests.Infrastructure;

namespace MptcpAnycast.Lab.Tests.Transport;

/// <summary>
/// The transport tests' lab: <see cref="SinglePopTopology"/> (a client and one POP on one link; the server holds the
/// anycast addresses 203.0.113.1 and 2001:db8:a::1 on <c>lo</c> and its unicast addresses 192.0.2.2 and 2001:db8:1::2 on
/// the link), with the POP server started from the built tool and HTTP clients whose sockets live in the client namespace.
/// </summary>
public sealed class TransportLab : IDisposable
{
    public static readonly IPAddress Anycast4 = SinglePopTopology.Anycast4;
    public static readonly IPAddress Anycast6 = SinglePopTopology.Anycast6;
    public static readonly IPAddress Unicast4 = SinglePopTopology.Unicast4;
    public static readonly IPAddress Unicast6 = SinglePopTopology.Unicast6;

    private readonly SinglePopTopology _topology;

    /// <param name="serverPathManager"><c>userspace</c> or <c>kernel</c>.</param>
    /// <param name="clientAddAddrAccepted">The client's <c>add_addr_accepted</c> limit (0 is the kernel default).</param>
    /// <param name="clientSubflowEndpoint">A second client address with a <c>subflow</c> endpoint (the C-flag case), or null.</param>
    public TransportLab(string serverPathManager, int clientAddAddrAccepted = 1, string? clientSubflowEndpoint = null)
    {
        _topology = SinglePopTopology.Create(new SinglePopOptions
        {
            ServerPathManager = serverPathManager == "kernel" ? LabPathManager.Kernel : LabPathManager.Userspace,
            ClientAddAddrAccepted = clientAddAddrAccepted,
            ClientSubflowEndpoint = clientSubflowEndpoint is null ? null : IPAddress.Parse(clientSubflowEndpoint),
        });
    }

    public LabNamespace Client => _topology.Client;

    public LabNamespace Server => _topology.Server;

    /// <summary>
    /// Starts the POP server in the server namespace (<c>dotnet mptcp-anycast.dll lab serve --Pop POP ARGS</c>, the
    /// transport's log at Debug); returns once it listens, or once it has exited (check <see cref="PopServer.HasExited"/>).
    /// </summary>
    /// <param name="pop">The POP name the server reports.</param>
    /// <param name="wrapper">A command that runs the server, such as <c>setpriv</c> with its options.</param>
    /// <param name="args">The server's own options.</param>
    public Task<PopServer> StartServerAsync(string pop, string[] wrapper, string[] args) =>
        PopServer.StartAsync(Server, LabTool.Command,
            ["--Pop", pop, "--Logging:LogLevel:MptcpAnycast", "Debug", "--Logging:Console:FormatterName", "simple", .. args],
            wrapper, new Dictionary<string, string> { ["DOTNET_CLI_HOME"] = Path.GetTempPath(), ["HOME"] = Path.GetTempPath() });

    /// <inheritdoc cref="StartServerAsync(string, string[], string[])"/>
    public Task<PopServer> StartServerAsync(string pop, params string[] args) => StartServerAsync(pop, [], args);

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
        return new HttpClient(handler) { Timeout = TaskTimeoutExtensions.DefaultTimeout };
    }

    /// <summary>GET /mptcp, parsed.</summary>
    public static async Task<JsonElement> GetStateAsync(HttpClient client, string baseUri)
        => await client.GetFromJsonAsync<JsonElement>($"{baseUri}/mptcp");

    /// <summary>Polls /mptcp on the same connection until <paramref name="state"/> or the timeout (default the toolbox's); returns the last answer.</summary>
    public static async Task<JsonElement> WaitForStateAsync(HttpClient client, string baseUri, string state, TimeSpan? timeout = null)
    {
        DateTime deadline = DateTime.UtcNow + (timeout ?? TaskTimeoutExtensions.DefaultTimeout);
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

    public void Dispose() => _topology.Dispose();
}
