using System.Net;
using System.Net.Sockets;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Lab.Tests.PathManagement;

/// <summary>
/// The path-manager tests' lab: <see cref="PathManagerPairTopology"/> (server 192.0.2.1 "anycast" and 198.51.100.1
/// unicast, userspace path manager, C flag; client 192.0.2.2 accepting one ADD_ADDR), with the tests' helpers.
/// </summary>
internal sealed class PathManagerLab : IDisposable
{
    public static readonly IPAddress Anycast = PathManagerPairTopology.Anycast;
    public static readonly IPAddress Unicast = PathManagerPairTopology.Unicast;
    public static readonly IPAddress ClientAddress = PathManagerPairTopology.ClientAddress;

    private readonly PathManagerPairTopology _topology = PathManagerPairTopology.Create();

    public LabNamespace Server => _topology.Server;

    public LabNamespace Client => _topology.Client;

    /// <summary>A path-manager client in each namespace, both subscribed to events.</summary>
    public Watchers Watch()
    {
        PathManagerClient server = Server.Run(PathManagerClient.Open);
        PathManagerClient client = Client.Run(PathManagerClient.Open);
        return new Watchers(server, server.SubscribeEvents(), client, client.SubscribeEvents());
    }

    public Socket Listen(IPEndPoint endPoint) => Server.Run(() => MptcpSocket.CreateListener(endPoint));

    /// <summary>Connects an MPTCP client to <paramref name="listener"/> through <paramref name="target"/> and exchanges a byte each way.</summary>
    public async Task<Connection> ConnectAsync(Socket listener, IPEndPoint target)
    {
        Socket client = Client.Run(() => MptcpSocket.Create(AddressFamily.InterNetwork));
        Task<Socket> accept = listener.AcceptAsync().WithTimeout(what: "accept");
        await client.ConnectAsync(target).WithTimeout(what: $"connect to {target}");
        Socket server = await accept;
        await client.SendAsync(new byte[] { 1 }, SocketFlags.None).WithTimeout();
        await server.ReceiveAsync(new byte[1], SocketFlags.None).WithTimeout();
        await server.SendAsync(new byte[] { 2 }, SocketFlags.None).WithTimeout();
        await client.ReceiveAsync(new byte[1], SocketFlags.None).WithTimeout();
        return new Connection(client, server);
    }

    /// <summary>An MPTCP/TCP MIB counter of a namespace (<c>nstat -az NAME</c>).</summary>
    public static long Counter(LabNamespace ns, string name) => ns.Counter(name);

    public void Dispose() => _topology.Dispose();

    internal sealed record Watchers(PathManagerClient ServerClient, PathManagerEventSubscription ServerEvents,
        PathManagerClient ClientClient, PathManagerEventSubscription ClientEvents) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await ServerClient.DisposeAsync();
            await ClientClient.DisposeAsync();
        }
    }

    internal sealed record Connection(Socket Client, Socket Server) : IDisposable
    {
        public uint ServerToken => MptcpSocket.GetConnectionInfo(Server).Token;

        public uint ClientToken => MptcpSocket.GetConnectionInfo(Client).Token;

        public void Dispose()
        {
            Client.Dispose();
            Server.Dispose();
        }
    }
}

/// <summary>
/// Path-manager lab tests run one at a time: the kernel's "is anyone subscribed to mptcp_pm_events" check is host-wide,
/// so one test's subscription would hide what another test pins down.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class PathManagerLabCollection
{
    public const string Name = "mptcp_pm";
}

internal static class EventWaiting
{
    /// <summary>Reads events until one matches, or fails after <paramref name="timeout"/> listing what was seen.</summary>
    public static async Task<PathManagerEvent> WaitForAsync(this PathManagerEventSubscription events, Func<PathManagerEvent, bool> match, TimeSpan? timeout = null)
    {
        var seen = new List<PathManagerEvent>();
        try
        {
            await foreach (PathManagerEvent e in events.ReadAllAsync(TaskTimeoutExtensions.Within(timeout)))
            {
                if (match(e))
                {
                    return e;
                }

                seen.Add(e);
            }
        }
        catch (OperationCanceledException)
        {
        }

        throw new Xunit.Sdk.XunitException($"no matching event within {timeout ?? TaskTimeoutExtensions.DefaultTimeout}; saw:{Environment.NewLine}{string.Join(Environment.NewLine, seen)}");
    }
}
