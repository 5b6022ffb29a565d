using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Lab.Tests.Infrastructure;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Lab.Tests.PathManagement;

/// <summary>
/// Two namespaces joined by a veth pair. The server holds 192.0.2.1 (the "anycast" address clients connect to) and
/// 198.51.100.1 (the unicast address it announces) and runs the userspace path manager with the C flag set; the
/// client holds 192.0.2.2 and accepts one ADD_ADDR.
/// </summary>
internal sealed class PathManagerLab : IDisposable
{
    public static readonly IPAddress Anycast = IPAddress.Parse("192.0.2.1");
    public static readonly IPAddress Unicast = IPAddress.Parse("198.51.100.1");
    public static readonly IPAddress ClientAddress = IPAddress.Parse("192.0.2.2");
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(15);

    public PathManagerLab()
    {
        Server = new TestNamespace("srv");
        try
        {
            Client = new TestNamespace("cli");
            Server.Exec($"ip link add vs type veth peer name vc netns {Client.Name}");
            Server.Exec($"ip addr add {Anycast}/24 dev vs && ip addr add {Unicast}/24 dev vs && ip link set vs up");
            Client.Exec($"ip addr add {ClientAddress}/24 dev vc && ip link set vc up && ip route add 198.51.100.0/24 dev vc");
            Server.Sysctl("net.mptcp.path_manager", "userspace");
            Server.Sysctl("net.mptcp.allow_join_initial_addr_port", "0");
            Client.Exec("ip mptcp limits set add_addr_accepted 1 subflows 2");
        }
        catch
        {
            Client?.Dispose();
            Server.Dispose();
            throw;
        }
    }

    public TestNamespace Server { get; }

    public TestNamespace Client { get; } = null!;

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
        using var cts = new CancellationTokenSource(Timeout);
        Socket client = Client.Run(() => MptcpSocket.Create(AddressFamily.InterNetwork));
        Task<Socket> accept = listener.AcceptAsync(cts.Token).AsTask();
        await client.ConnectAsync(target, cts.Token);
        Socket server = await accept.WaitAsync(cts.Token);
        await client.SendAsync(new byte[] { 1 }, SocketFlags.None, cts.Token);
        await server.ReceiveAsync(new byte[1], SocketFlags.None, cts.Token);
        await server.SendAsync(new byte[] { 2 }, SocketFlags.None, cts.Token);
        await client.ReceiveAsync(new byte[1], SocketFlags.None, cts.Token);
        return new Connection(client, server);
    }

    /// <summary>An MPTCP/TCP MIB counter of a namespace (<c>nstat -az NAME</c>).</summary>
    public static long Counter(TestNamespace ns, string name)
    {
        foreach (string line in ns.Exec($"nstat -az {name}").Split('\n'))
        {
            string[] fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length >= 2 && fields[0] == name)
            {
                return long.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        throw new InvalidOperationException($"counter {name} not found");
    }

    public void Dispose()
    {
        Client?.Dispose();
        Server.Dispose();
    }

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
    public static async Task<PathManagerEvent> WaitForAsync(this PathManagerEventSubscription events, Func<PathManagerEvent, bool> match, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var seen = new List<PathManagerEvent>();
        try
        {
            await foreach (PathManagerEvent e in events.ReadAllAsync(cts.Token))
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

        throw new Xunit.Sdk.XunitException($"no matching event within {timeout}; saw:{Environment.NewLine}{string.Join(Environment.NewLine, seen)}");
    }

    /// <summary>Polls <paramref name="condition"/> every 50 ms until true or <paramref name="timeout"/>.</summary>
    public static async Task<bool> EventuallyAsync(Func<bool> condition, TimeSpan timeout)
    {
        DateTime deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (condition())
            {
                return true;
            }

            await Task.Delay(50);
        }

        return condition();
    }
}
