using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Lab.Tests.Infrastructure;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Lab.Tests.PathManagement;

[Collection(PathManagerLabCollection.Name)]
public sealed class PathManagerClientLabTests
{
    [LabFact]
    public async Task Announce_reaches_the_client_which_joins_and_the_server_sees_the_subflow()
    {
        using var lab = new PathManagerLab();
        await using PathManagerLab.Watchers pm = lab.Watch();
        (PathManagerClient serverPm, PathManagerEventSubscription serverEvents, PathManagerEventSubscription clientEvents) =
            (pm.ServerClient, pm.ServerEvents, pm.ClientEvents);
        using var listener = lab.Listen(new IPEndPoint(IPAddress.Any, 5000));
        using PathManagerLab.Connection connection = await lab.ConnectAsync(listener, new IPEndPoint(PathManagerLab.Anycast, 5000));
        uint token = connection.ServerToken;

        await serverPm.AnnounceAsync(token, 7, new IPEndPoint(PathManagerLab.Unicast, 0)).WithTimeout();

        PathManagerEvent announced = await clientEvents.WaitForAsync(e => e.Type == PathManagerEventType.Announced);
        Assert.Equal(connection.ClientToken, announced.Token);
        Assert.Equal((byte)7, announced.RemoteId);
        Assert.Equal(PathManagerLab.Unicast, announced.Destination!.Address);
        Assert.Equal(5000, announced.Destination.Port); // no port announced: the peer reports (and joins) the connection's port

        PathManagerEvent joined = await serverEvents.WaitForAsync(
            e => e.Type == PathManagerEventType.SubflowEstablished && e.Token == token);
        Assert.Equal(PathManagerLab.Unicast, joined.Source!.Address);
        Assert.Equal(5000, joined.Source.Port);
        Assert.Equal(PathManagerLab.ClientAddress, joined.Destination!.Address);
        Assert.Equal((byte)7, joined.LocalId);
        Assert.True(await Eventually.WaitAsync(() => MptcpSocket.GetSubflows(connection.Server).Length == 2, TaskTimeoutExtensions.DefaultTimeout));
    }

    [LabFact]
    public async Task Without_an_event_subscriber_the_kernel_resets_the_join_and_with_the_clients_subscription_keeps_it()
    {
        // The kernel asks whether anyone on the host listens to mptcp_pm_events (netlink's listener bitmap is global,
        // not per namespace), so phase 1 holds no subscription anywhere, the client namespace included.
        using var lab = new PathManagerLab();
        using var listener = lab.Listen(new IPEndPoint(IPAddress.Any, 5000));

        // 1. No subscriber: ANNOUNCE succeeds, the client accepts the address and joins, the server refuses the join.
        //    Another process on the host may hold a subscription for a while (it hides the trap): try a few times.
        await using (PathManagerClient bare = await lab.Server.Run(() => PathManagerClient.OpenAsync(
            new PathManagerClientOptions { HoldEventSubscription = false }, CancellationToken.None)).WithTimeout())
        {
            bool rejected = false;
            for (int attempt = 0; attempt < 8 && !rejected; attempt++)
            {
                if (attempt > 0)
                {
                    await Task.Delay(TimeSpan.FromSeconds(3));
                }

                long rejectedBefore = PathManagerLab.Counter(lab.Server, "MPTcpExtMPJoinRejected");
                using PathManagerLab.Connection first = await lab.ConnectAsync(listener, new IPEndPoint(PathManagerLab.Anycast, 5000));
                await bare.AnnounceAsync(first.ServerToken, 1, new IPEndPoint(PathManagerLab.Unicast, 0)).WithTimeout();
                Assert.False(bare.IsSubscribedToEvents);
                Assert.True(await Eventually.WaitAsync(() => MptcpSocket.GetConnectionInfo(first.Client).AddAddrAccepted == 1, TaskTimeoutExtensions.DefaultTimeout));
                Assert.True(await Eventually.WaitAsync(
                    () => PathManagerLab.Counter(lab.Server, "MPTcpExtMPJoinRejected") > rejectedBefore || MptcpSocket.GetSubflows(first.Server).Length > 1, TaskTimeoutExtensions.DefaultTimeout));
                rejected = MptcpSocket.GetSubflows(first.Server).Length == 1;
            }

            Assert.True(rejected, "every join was accepted without a subscriber here: some other socket on this host keeps subscribing to "
                + "mptcp_pm_events (the kernel checks host-wide), e.g. 'ip mptcp monitor' or another lab run");
        }

        // 2. The same through a default client: it holds the subscription, so the join is kept.
        await using PathManagerClient holding = lab.Server.Run(PathManagerClient.Open);
        using PathManagerLab.Connection second = await lab.ConnectAsync(listener, new IPEndPoint(PathManagerLab.Anycast, 5000));
        await holding.AnnounceAsync(second.ServerToken, 1, new IPEndPoint(PathManagerLab.Unicast, 0)).WithTimeout();
        Assert.True(holding.IsSubscribedToEvents);
        Assert.True(await Eventually.WaitAsync(() => MptcpSocket.GetSubflows(second.Server).Length == 2, TaskTimeoutExtensions.DefaultTimeout));
        long rejectedSoFar = PathManagerLab.Counter(lab.Server, "MPTcpExtMPJoinRejected");
        await Task.Delay(500);
        Assert.Equal(2, MptcpSocket.GetSubflows(second.Server).Length);
        Assert.Equal(rejectedSoFar, PathManagerLab.Counter(lab.Server, "MPTcpExtMPJoinRejected"));
    }

    [LabFact]
    public async Task Announced_port_travels_in_the_right_byte_order_and_the_join_lands_on_that_port()
    {
        using var lab = new PathManagerLab();
        await using PathManagerLab.Watchers pm = lab.Watch();
        (PathManagerClient serverPm, PathManagerEventSubscription serverEvents, PathManagerEventSubscription clientEvents) =
            (pm.ServerClient, pm.ServerEvents, pm.ClientEvents);
        using var listener = lab.Listen(new IPEndPoint(PathManagerLab.Anycast, 5000));
        using var unicastListener = lab.Listen(new IPEndPoint(PathManagerLab.Unicast, 6001)); // 0x1771; swapped it would be 28951
        using PathManagerLab.Connection connection = await lab.ConnectAsync(listener, new IPEndPoint(PathManagerLab.Anycast, 5000));
        uint token = connection.ServerToken;

        await serverPm.AnnounceAsync(token, 3, new IPEndPoint(PathManagerLab.Unicast, 6001)).WithTimeout();

        PathManagerEvent announced = await clientEvents.WaitForAsync(e => e.Type == PathManagerEventType.Announced);
        Assert.Equal(new IPEndPoint(PathManagerLab.Unicast, 6001), announced.Destination);
        PathManagerEvent joined = await serverEvents.WaitForAsync(e => e.Type == PathManagerEventType.SubflowEstablished && e.Token == token);
        Assert.Equal(new IPEndPoint(PathManagerLab.Unicast, 6001), joined.Source);
        Assert.True(await Eventually.WaitAsync(
            () => MptcpSocket.GetSubflows(connection.Server).Any(s => s.Local.Equals(new IPEndPoint(PathManagerLab.Unicast, 6001))), TaskTimeoutExtensions.DefaultTimeout));

        // SET_FLAGS takes the same host-order ports: demote the anycast subflow, the client hears MP_PRIO.
        var anycastLocal = (IPEndPoint)connection.Server.LocalEndPoint!;
        var clientRemote = (IPEndPoint)connection.Server.RemoteEndPoint!;
        await serverPm.SetSubflowBackupAsync(token, anycastLocal, clientRemote, backup: true).WithTimeout();
        PathManagerEvent priority = await clientEvents.WaitForAsync(
            e => e.Type == PathManagerEventType.SubflowPriority && e.Token == connection.ClientToken);
        Assert.True(priority.Backup);
        Assert.Equal(anycastLocal, priority.Destination);

        // Removing the address closes the joined subflow.
        await serverPm.RemoveAsync(token, 3).WithTimeout();
        await clientEvents.WaitForAsync(e => e.Type == PathManagerEventType.Removed && e.RemoteId == 3);
        Assert.True(await Eventually.WaitAsync(() => MptcpSocket.GetSubflows(connection.Server).Length == 1, TaskTimeoutExtensions.DefaultTimeout));
    }

    [LabFact]
    public async Task A_failed_event_socket_ends_the_stream_with_an_error_and_a_new_subscription_gets_events_again()
    {
        using LabNamespace ns = Topology.Single("evfail");
        ns.Sysctl("net.mptcp.path_manager", "userspace");
        await using PathManagerClient pm = ns.Run(PathManagerClient.Open);
        PathManagerEventSubscription first = pm.SubscribeEvents();
        using Socket listener = ns.Run(() => MptcpSocket.CreateListener(new IPEndPoint(IPAddress.Loopback, 0)));
        await first.WaitForAsync(e => e.Type == PathManagerEventType.ListenerCreated);

        pm.CloseEventSocketBehindTheClientsBack();

        // The reader is told, instead of waiting forever; the client knows it is no longer subscribed.
        PathManagerException ended = await Assert.ThrowsAsync<PathManagerException>(async () =>
        {
            await foreach (PathManagerEvent unused in first.ReadAllAsync(TaskTimeoutExtensions.Within()))
            {
            }
        });
        Assert.Equal("receive mptcp_pm_events", ended.Command);
        Assert.Contains("subscribe again", ended.Message);
        Assert.NotEqual(0, ended.Errno);
        Assert.False(pm.IsSubscribedToEvents);

        // Subscribing again (from this test thread, which is not in the namespace) opens a fresh event socket in the
        // client's namespace: a connection made there is reported.
        await using PathManagerEventSubscription second = pm.SubscribeEvents();
        Assert.True(pm.IsSubscribedToEvents);
        Socket client = ns.Run(() => MptcpSocket.Create(AddressFamily.InterNetwork));
        using (client)
        {
            Task<Socket> accept = listener.AcceptAsync().WithTimeout(what: "accept");
            await client.ConnectAsync(listener.LocalEndPoint!).WithTimeout(what: "connect");
            using Socket server = await accept;
            uint token = MptcpSocket.GetConnectionInfo(server).Token;
            await client.SendAsync(new byte[] { 1 }, SocketFlags.None).WithTimeout();
            await server.ReceiveAsync(new byte[1], SocketFlags.None).WithTimeout(); // the server side is fully established now

            PathManagerEvent created = await second.WaitForAsync(e => e.Type == PathManagerEventType.Created && e.Token == token);
            Assert.Equal(listener.LocalEndPoint, created.Source);
            await second.WaitForAsync(e => e.Type == PathManagerEventType.Established && e.Token == token);
        }

        // Commands went through the untouched command socket all along.
        await pm.GetLimitsAsync().WithTimeout();
    }

    [LabFact]
    public async Task The_kernel_queues_only_the_event_types_that_subscribers_want()
    {
        using var lab = new PathManagerLab();
        await using PathManagerClient serverPm = lab.Server.Run(PathManagerClient.Open);
        using var listener = lab.Listen(new IPEndPoint(IPAddress.Any, 5000));

        // Only CLOSED wanted: the connection's CREATED and ESTABLISHED are dropped by the socket filter, in the kernel.
        using PathManagerEventSubscription closedOnly = serverPm.SubscribeEvents(types: [PathManagerEventType.Closed]);
        PathManagerLab.Connection first = await lab.ConnectAsync(listener, new IPEndPoint(PathManagerLab.Anycast, 5000));
        uint firstToken = first.ServerToken;
        first.Dispose();
        await closedOnly.WaitForAsync(e => e.Type == PathManagerEventType.Closed && e.Token == firstToken);
        await Task.Delay(200); // anything else the kernel queued would be read by now
        Assert.Equal(1, serverPm.EventDatagramsReceived);

        // A subscriber that wants everything widens the filter: the next connection's CREATED reaches the socket.
        using PathManagerEventSubscription everything = serverPm.SubscribeEvents();
        PathManagerLab.Connection second = await lab.ConnectAsync(listener, new IPEndPoint(PathManagerLab.Anycast, 5000));
        uint secondToken = second.ServerToken;
        await everything.WaitForAsync(e => e.Type == PathManagerEventType.Created && e.Token == secondToken);
        second.Dispose();
        await closedOnly.WaitForAsync(e => e.Type == PathManagerEventType.Closed && e.Token == secondToken);
        Assert.True(serverPm.EventDatagramsReceived >= 4, $"{serverPm.EventDatagramsReceived} datagrams: CREATED, ESTABLISHED and CLOSED should have come");

        // Both gone: the subscription is only held (for the userspace path manager) and nothing is queued at all.
        everything.Dispose();
        closedOnly.Dispose();
        long before = serverPm.EventDatagramsReceived;
        using (PathManagerLab.Connection third = await lab.ConnectAsync(listener, new IPEndPoint(PathManagerLab.Anycast, 5000)))
        {
        }

        await Task.Delay(300);
        Assert.Equal(before, serverPm.EventDatagramsReceived);
        Assert.True(serverPm.IsSubscribedToEvents);
    }

    [LabFact]
    public async Task Kernel_errors_carry_errno_command_and_the_kernels_own_text()
    {
        using var lab = new PathManagerLab();
        await using PathManagerClient serverPm = lab.Server.Run(PathManagerClient.Open);
        using var listener = lab.Listen(new IPEndPoint(IPAddress.Any, 5000));
        using PathManagerLab.Connection connection = await lab.ConnectAsync(listener, new IPEndPoint(PathManagerLab.Anycast, 5000));

        uint wrongToken = connection.ServerToken ^ 0x5a5a5a5a;
        PathManagerException badToken = await Assert.ThrowsAsync<PathManagerException>(
            () => serverPm.AnnounceAsync(wrongToken, 1, new IPEndPoint(PathManagerLab.Unicast, 0)).WithTimeout());
        Assert.Equal(22, badToken.Errno);
        Assert.Equal("ANNOUNCE", badToken.Command);
        Assert.Equal("invalid token", badToken.KernelMessage);
        Assert.Contains("invalid token", badToken.Message);

        PathManagerException idZero = await Assert.ThrowsAsync<PathManagerException>(
            () => serverPm.AnnounceAsync(connection.ServerToken, 0, new IPEndPoint(PathManagerLab.Unicast, 0)).WithTimeout());
        Assert.Equal(22, idZero.Errno);
        Assert.Equal("invalid addr id", idZero.KernelMessage); // Linux 6.18; older kernels said "invalid addr id or flags"

        // Still usable after errors, from many callers at once.
        Task[] many = Enumerable.Range(1, 20).Select(i => serverPm.GetLimitsAsync()).ToArray();
        await Task.WhenAll(many).WithTimeout();
    }

    [LabFact]
    public async Task A_burst_of_concurrent_commands_gets_every_answer_even_through_a_tiny_receive_buffer()
    {
        const int Burst = 2000;
        const int EINVAL = 22;
        using LabNamespace ns = Topology.Single("burst");
        ns.Sysctl("net.mptcp.path_manager", "userspace");

        // An 8 KiB command socket (the kernel's floor) holds a handful of answers: 2000 commands from 8 threads at once
        // lose none, because each caller reads its own answer right after sending. (With answers queued for a reader,
        // most of them were dropped.)
        await using PathManagerClient pm = await ns.Run(() => PathManagerClient.OpenAsync(
            new PathManagerClientOptions { CommandReceiveBufferSize = 4096, CommandTimeout = TimeSpan.FromSeconds(60) },
            CancellationToken.None)).WithTimeout();
        var started = System.Diagnostics.Stopwatch.StartNew();
        var burst = new Task[Burst];
        Parallel.For(0, Burst, new ParallelOptions { MaxDegreeOfParallelism = 8 },
            i => burst[i] = pm.AnnounceAsync(0x7e570000u + (uint)i, 1, new IPEndPoint(IPAddress.Parse("192.0.2.1"), 0)));
        await Task.WhenAll(burst.Select(t => t.ContinueWith(_ => { }, TaskScheduler.Default))).WithTimeout(TimeSpan.FromSeconds(90), "the burst of commands");
        TimeSpan elapsed = started.Elapsed;

        string[] wrong = burst
            .Select(t => t.Exception?.InnerException is PathManagerException { Errno: EINVAL, KernelMessage: "invalid token" } ? null : $"{t.Status}: {t.Exception?.InnerException?.Message}")
            .OfType<string>().Distinct().ToArray();
        Assert.True(wrong.Length == 0, $"not every command got the kernel's own answer (\"invalid token\"):\n{string.Join('\n', wrong)}");
        Assert.True(elapsed < TimeSpan.FromSeconds(15), $"the burst took {elapsed.TotalSeconds:0.0} s");

        // A dump (several messages, then NLMSG_DONE) still works through that buffer.
        for (byte id = 1; id <= 8; id++)
        {
            await pm.AddEndpointAsync(new MptcpEndpoint(id, new IPAddress([198, 51, 100, id]), 0, MptcpEndpointFlags.Signal, 0)).WithTimeout();
        }

        Assert.Equal(8, (await pm.GetEndpointsAsync().WithTimeout()).Count);
    }
}
