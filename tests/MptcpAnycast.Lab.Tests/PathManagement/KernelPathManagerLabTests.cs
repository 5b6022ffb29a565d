using System.Globalization;
using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Lab.Tests.Infrastructure;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Lab.Tests.PathManagement;

/// <summary>Endpoints, limits and events of the in-kernel path manager, checked against iproute2 in a fresh namespace.</summary>
[Collection(PathManagerLabCollection.Name)]
public sealed class KernelPathManagerLabTests
{
    [LabFact]
    public async Task Endpoint_commands_agree_with_ip_mptcp_endpoint_show()
    {
        using LabNamespace ns = Topology.Single("ep");
        ns.Ip("link", "add", "d0", "type", "veth", "peer", "name", "d1");
        ns.Ip("link", "set", "d0", "up");
        ns.Ip("link", "set", "d1", "up");
        ns.Ip("addr", "add", "192.0.2.10/24", "dev", "d0");
        ns.Ip("addr", "add", "198.51.100.5/24", "dev", "d0");
        ns.Ip("addr", "add", "2001:db8::10/64", "dev", "d0", "nodad");
        int d0 = int.Parse(ns.Exec("cat", "/sys/class/net/d0/ifindex").Trim(), CultureInfo.InvariantCulture);
        await using PathManagerClient pm = ns.Run(PathManagerClient.Open);

        byte picked = await pm.AddEndpointAsync(new MptcpEndpoint(0, IPAddress.Parse("192.0.2.10"), 0, MptcpEndpointFlags.Signal, d0)).WithTimeout();
        await pm.AddEndpointAsync(new MptcpEndpoint(7, IPAddress.Parse("2001:db8::10"), 0, MptcpEndpointFlags.Subflow | MptcpEndpointFlags.Backup, d0)).WithTimeout();
        await pm.AddEndpointAsync(new MptcpEndpoint(9, IPAddress.Parse("198.51.100.5"), 4000, MptcpEndpointFlags.Signal, 0)).WithTimeout();

        IReadOnlyList<MptcpEndpoint> ours = await pm.GetEndpointsAsync().WithTimeout();
        Assert.Equal(IpEndpoints(ns), ours.Select(Describe).OrderBy(x => x));
        Assert.Equal(3, ours.Count);
        Assert.Contains(ours, e => e.Id == picked && e.Address.Equals(IPAddress.Parse("192.0.2.10")) && e.InterfaceIndex == d0);
        Assert.Equal(new MptcpEndpoint(9, IPAddress.Parse("198.51.100.5"), 4000, MptcpEndpointFlags.Signal, 0), await pm.GetEndpointAsync(9).WithTimeout());

        await pm.SetEndpointFlagsAsync(7, MptcpEndpointFlags.None).WithTimeout(); // clears backup
        Assert.Equal(MptcpEndpointFlags.Subflow, (await pm.GetEndpointAsync(7).WithTimeout()).Flags);
        Assert.DoesNotContain("backup", ns.Ip("mptcp", "endpoint", "show", "id", "7"));

        await pm.DeleteEndpointAsync(9).WithTimeout();
        Assert.Equal(IpEndpoints(ns), (await pm.GetEndpointsAsync().WithTimeout()).Select(Describe).OrderBy(x => x));
        PathManagerException missing = await Assert.ThrowsAsync<PathManagerException>(() => pm.GetEndpointAsync(9).WithTimeout());
        Assert.Equal("GET_ADDR", missing.Command);
        Assert.NotNull(missing.KernelMessage);

        await pm.FlushEndpointsAsync().WithTimeout();
        Assert.Empty(await pm.GetEndpointsAsync().WithTimeout());
        Assert.Empty(IpEndpoints(ns));
    }

    [LabFact]
    public async Task An_endpoint_on_a_port_in_use_is_refused_naming_the_port()
    {
        using LabNamespace ns = Topology.Single("epport");
        ns.Ip("addr", "add", "192.0.2.10/32", "dev", "lo");
        using Socket listener = ns.Run(() => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
        listener.Bind(new IPEndPoint(IPAddress.Parse("192.0.2.10"), 0));
        listener.Listen();
        int port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        await using PathManagerClient pm = ns.Run(PathManagerClient.Open);

        PathManagerException e = await Assert.ThrowsAsync<PathManagerException>(() =>
            pm.AddEndpointAsync(new MptcpEndpoint(3, IPAddress.Parse("192.0.2.10"), port, MptcpEndpointFlags.Signal, 0)).WithTimeout());
        Assert.Equal(98, e.Errno);
        Assert.Contains($"port {port} on 192.0.2.10 is in use; an endpoint with a port makes the kernel listen there", e.Message);
        Assert.Empty(IpEndpoints(ns));
    }

    [LabFact]
    public async Task Limit_commands_agree_with_ip_mptcp_limits_show()
    {
        using LabNamespace ns = Topology.Single("lim");
        await using PathManagerClient pm = ns.Run(PathManagerClient.Open);

        Assert.Equal(IpLimits(ns), await pm.GetLimitsAsync().WithTimeout());
        await pm.SetLimitsAsync(new MptcpLimits(Subflows: 3, AddAddrAccepted: 4)).WithTimeout();
        Assert.Equal(new MptcpLimits(3, 4), IpLimits(ns));
        ns.Ip("mptcp", "limits", "set", "subflows", "5", "add_addr_accepted", "1");
        Assert.Equal(new MptcpLimits(5, 1), await pm.GetLimitsAsync().WithTimeout());

        PathManagerException tooMany = await Assert.ThrowsAsync<PathManagerException>(() => pm.SetLimitsAsync(new MptcpLimits(100, 1)).WithTimeout());
        Assert.Equal(22, tooMany.Errno);
        Assert.NotNull(tooMany.KernelMessage);
        Assert.Contains(tooMany.KernelMessage!, tooMany.Message);
    }

    [LabFact]
    public async Task Events_describe_a_loopback_connection_with_all_its_attributes()
    {
        using LabNamespace ns = Topology.Single("ev");
        await using PathManagerClient pm = ns.Run(PathManagerClient.Open);
        await using PathManagerEventSubscription events = pm.SubscribeEvents();
        using Socket listener = ns.Run(() => MptcpSocket.CreateListener(new IPEndPoint(IPAddress.Loopback, 0)));
        int port = ((IPEndPoint)listener.LocalEndPoint!).Port;

        PathManagerEvent listening = await events.WaitForAsync(e => e.Type == PathManagerEventType.ListenerCreated);
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, port), listening.Source);

        (Socket client, Socket server) = await ConnectAsync(ns, listener);
        using Socket ownedClient = client; // closed early below; disposing twice is harmless
        using Socket ownedServer = server;
        uint serverToken = MptcpSocket.GetConnectionInfo(server).Token;

        PathManagerEvent created = await events.WaitForAsync(e => e.Type == PathManagerEventType.Created && e.ServerSide == true);
        Assert.Equal(serverToken, created.Token);
        Assert.Equal(AddressFamily.InterNetwork, created.Family);
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, port), created.Source);
        Assert.Equal(client.LocalEndPoint, created.Destination);

        server.Dispose();
        client.Dispose();
        await events.WaitForAsync(e => e.Type == PathManagerEventType.Closed && e.Token == serverToken);
        listener.Dispose();
        await events.WaitForAsync(e => e.Type == PathManagerEventType.ListenerClosed);
        Assert.Equal(0, events.DroppedEvents);
    }

    [LabFact]
    public async Task A_tiny_kernel_buffer_under_a_burst_yields_the_loss_marker_and_events_keep_coming()
    {
        using LabNamespace ns = Topology.Single("loss");
        await using PathManagerClient pm = await ns.Run(() => PathManagerClient.OpenAsync(
            new PathManagerClientOptions { EventReceiveBufferSize = 1 }, CancellationToken.None)).WithTimeout();
        await using PathManagerEventSubscription events = pm.SubscribeEvents();

        // A burst normally overflows the tiny buffer at once; on a loaded machine the reader may keep up, so burst
        // again (at most five times) until the kernel reports the loss.
        bool lost = false;
        for (int round = 0; round < 5 && !lost; round++)
        {
            await ns.Run(() => BurstAsync(connections: 200)).WithTimeout(TimeSpan.FromSeconds(60), "a burst of 200 connections");
            try
            {
                await events.WaitForAsync(e => e.Type == PathManagerEventType.EventsLost, TimeSpan.FromSeconds(3));
                lost = true;
            }
            catch (Xunit.Sdk.XunitException) when (round < 4)
            {
            }
        }

        // Still working: a fresh connection is reported. The 1-byte buffer can drop its events too, so try a few
        // fresh connections (at most five); one of them must come through.
        using Socket listener = ns.Run(() => MptcpSocket.CreateListener(new IPEndPoint(IPAddress.Loopback, 0)));
        for (int attempt = 0; ; attempt++)
        {
            (Socket client, Socket server) = await ConnectAsync(ns, listener);
            using (client)
            using (server)
            {
                uint token = MptcpSocket.GetConnectionInfo(server).Token;
                try
                {
                    await events.WaitForAsync(e => e.Token == token && e.Type is PathManagerEventType.Created or PathManagerEventType.Established,
                        TimeSpan.FromSeconds(3));
                    return;
                }
                catch (Xunit.Sdk.XunitException) when (attempt < 4)
                {
                }
            }
        }
    }

    [LabFact]
    public async Task Event_receive_buffer_is_set_as_asked_and_forced_above_rmem_max()
    {
        using LabNamespace ns = Topology.Single("rcvbuf");
        int rmemMax = int.Parse(File.ReadAllText("/proc/sys/net/core/rmem_max").Trim(), CultureInfo.InvariantCulture);
        int aboveMax = rmemMax + 1024 * 1024;
        foreach (int asked in new[] { 4096, aboveMax })
        {
            await using PathManagerClient pm = await ns.Run(() => PathManagerClient.OpenAsync(
                new PathManagerClientOptions { EventReceiveBufferSize = asked }, CancellationToken.None)).WithTimeout();
            Assert.Equal(2 * asked, pm.EventReceiveBufferSize); // the kernel doubles it; SO_RCVBUF alone would cap it at 2 * rmem_max
        }
    }

    [LabFact]
    public async Task A_subscriber_that_does_not_read_loses_events_to_its_bounded_buffer_and_is_told_so()
    {
        using LabNamespace ns = Topology.Single("slow");
        await using PathManagerClient pm = ns.Run(PathManagerClient.Open);
        await using PathManagerEventSubscription slow = pm.SubscribeEvents(capacity: 4);
        await using PathManagerEventSubscription fast = pm.SubscribeEvents();

        await ns.Run(() => BurstAsync(connections: 20)).WithTimeout(TimeSpan.FromSeconds(60), "a burst of 20 connections");
        Assert.True(await Eventually.WaitAsync(() => slow.DroppedEvents > 0, TaskTimeoutExtensions.DefaultTimeout));

        var seen = new List<PathManagerEvent>();
        while (slow.TryRead(out PathManagerEvent? e))
        {
            seen.Add(e);
        }

        Assert.Equal(4, seen.Count);
        Assert.DoesNotContain(seen, e => e.Type == PathManagerEventType.EventsLost); // no room for it yet...

        // ...the next event makes room for the marker first.
        using Socket listener = ns.Run(() => MptcpSocket.CreateListener(new IPEndPoint(IPAddress.Loopback, 0)));
        PathManagerEvent next = await slow.WaitForAsync(_ => true);
        Assert.Equal(PathManagerEventType.EventsLost, next.Type);
        // Late events of the burst may still come first, and may fill the 4 places again so that the listener's event
        // is dropped in turn (with a marker behind it): the stream must go on to a new listener's event.
        var listeners = new List<Socket>();
        try
        {
            PathManagerEvent? created = null;
            for (int attempt = 0; attempt < 5 && created is null; attempt++)
            {
                listeners.Add(ns.Run(() => MptcpSocket.CreateListener(new IPEndPoint(IPAddress.Loopback, 0))));
                try
                {
                    created = await slow.WaitForAsync(e => e.Type == PathManagerEventType.ListenerCreated, TimeSpan.FromSeconds(3));
                }
                catch (Xunit.Sdk.XunitException)
                {
                    // Not within 3 s: dropped behind late events; another listener makes another event.
                }
            }

            Assert.NotNull(created);
        }
        finally
        {
            listeners.ForEach(l => l.Dispose());
        }

        Assert.True(fast.TryRead(out _));
    }

    [LabFact]
    public async Task A_missing_family_is_reported_as_such()
    {
        using LabNamespace ns = Topology.Single("fam");
        PathManagerException missing = await Assert.ThrowsAsync<PathManagerException>(() => ns.Run(() => PathManagerClient.OpenAsync(
            new PathManagerClientOptions { FamilyName = "mptcp_pm_nope" }, CancellationToken.None)).WithTimeout());
        Assert.Equal(2, missing.Errno); // ENOENT
        Assert.Contains("no 'mptcp_pm_nope' generic netlink family: MPTCP is not available", missing.Message);
    }

    [LabFact]
    public async Task Userspace_subflow_create_and_destroy_open_and_close_a_subflow()
    {
        using LabNamespace ns = Topology.Single("sf");
        ns.Sysctl("net.mptcp.path_manager", "userspace");
        await using PathManagerClient pm = ns.Run(PathManagerClient.Open);
        await using PathManagerEventSubscription events = pm.SubscribeEvents();
        using Socket listener = ns.Run(() => MptcpSocket.CreateListener(new IPEndPoint(IPAddress.Any, 0)));
        int port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        (Socket client, Socket server) = await ConnectAsync(ns, listener);
        using Socket ownedClient = client;
        using Socket ownedServer = server;
        // Data both ways makes the connection fully established, which SUBFLOW_CREATE needs (else ENOTCONN).
        await client.SendAsync(new byte[] { 1 }).WithTimeout();
        await server.ReceiveAsync(new byte[1]).WithTimeout();
        await server.SendAsync(new byte[] { 2 }).WithTimeout();
        await client.ReceiveAsync(new byte[1]).WithTimeout();
        uint clientToken = MptcpSocket.GetConnectionInfo(client).Token;
        var remote = new IPEndPoint(IPAddress.Loopback, port);

        // The client (userspace PM too) opens a second subflow from 127.0.0.2.
        await pm.CreateSubflowAsync(clientToken, 2, new IPEndPoint(IPAddress.Parse("127.0.0.2"), 0), remote).WithTimeout();
        PathManagerEvent joined = await events.WaitForAsync(
            e => e.Type == PathManagerEventType.SubflowEstablished && e.Token == clientToken);
        Assert.Equal(IPAddress.Parse("127.0.0.2"), joined.Source!.Address);
        Assert.NotEqual(0, joined.Source.Port);
        Assert.Equal(remote, joined.Destination);
        Assert.True(await Eventually.WaitAsync(() => MptcpSocket.GetSubflows(server).Length == 2, TaskTimeoutExtensions.DefaultTimeout));

        await pm.DestroySubflowAsync(clientToken, joined.Source, remote).WithTimeout();
        await events.WaitForAsync(e => e.Type == PathManagerEventType.SubflowClosed && e.Token == clientToken);
        Assert.True(await Eventually.WaitAsync(() => MptcpSocket.GetSubflows(client).Length == 1, TaskTimeoutExtensions.DefaultTimeout));

        PathManagerException gone = await Assert.ThrowsAsync<PathManagerException>(
            () => pm.DestroySubflowAsync(clientToken, joined.Source, remote).WithTimeout());
        Assert.Equal("SUBFLOW_DESTROY", gone.Command);
    }

    private static async Task<(Socket Client, Socket Server)> ConnectAsync(LabNamespace ns, Socket listener)
    {
        Socket client = ns.Run(() => MptcpSocket.Create(AddressFamily.InterNetwork));
        Task<Socket> accept = listener.AcceptAsync().WithTimeout(what: "accept");
        await client.ConnectAsync(listener.LocalEndPoint!).WithTimeout(what: "connect");
        return (client, await accept);
    }

    /// <summary>Opens and closes <paramref name="connections"/> MPTCP connections on loopback as fast as it can.</summary>
    private static async Task BurstAsync(int connections)
    {
        using Socket listener = MptcpSocket.CreateListener(new IPEndPoint(IPAddress.Loopback, 0));
        var clients = new List<Socket>();
        try
        {
            for (int i = 0; i < connections; i++)
            {
                Socket client = MptcpSocket.Create(AddressFamily.InterNetwork);
                clients.Add(client);
                client.Connect(listener.LocalEndPoint!);
                clients.Add(listener.Accept());
            }
        }
        finally
        {
            foreach (Socket s in clients)
            {
                s.Dispose();
            }
        }

        await Task.Yield();
    }

    private static string Describe(MptcpEndpoint e)
    {
        var text = new List<string> { e.Address.ToString() };
        if (e.Port != 0)
        {
            text.Add($"port {e.Port}");
        }

        text.Add($"id {e.Id}");
        text.AddRange(Enum.GetValues<MptcpEndpointFlags>().Where(f => f != 0 && e.Flags.HasFlag(f)).Select(f => f.ToString().ToLowerInvariant()));
        if (e.InterfaceIndex != 0)
        {
            text.Add($"ifindex {e.InterfaceIndex}");
        }

        return string.Join(' ', text);
    }

    /// <summary><c>ip mptcp endpoint show</c>, normalised like <see cref="Describe"/> (dev names become ifindex).</summary>
    private static IEnumerable<string> IpEndpoints(LabNamespace ns)
    {
        var lines = new List<string>();
        foreach (string line in ns.Ip("mptcp", "endpoint", "show").Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var words = line.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries).ToList();
            int dev = words.IndexOf("dev");
            if (dev >= 0)
            {
                string ifindex = ns.Exec("cat", $"/sys/class/net/{words[dev + 1]}/ifindex").Trim();
                words[dev] = "ifindex";
                words[dev + 1] = ifindex;
                words.AddRange(words.GetRange(dev, 2));
                words.RemoveRange(dev, 2);
            }

            lines.Add(string.Join(' ', words));
        }

        return lines.OrderBy(x => x);
    }

    private static MptcpLimits IpLimits(LabNamespace ns)
    {
        string[] words = ns.Ip("mptcp", "limits", "show").Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries);
        uint Value(string name) => uint.Parse(words[Array.IndexOf(words, name) + 1], CultureInfo.InvariantCulture);
        return new MptcpLimits(Value("subflows"), Value("add_addr_accepted"));
    }
}
