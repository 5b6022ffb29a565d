using System.Net;
using Microsoft.Extensions.Logging.Abstractions;
using MptcpAnycast.Kestrel;
using MptcpAnycast.Kestrel.Connections;
using MptcpAnycast.Kestrel.Control;
using MptcpAnycast.Kestrel.Diagnostics;
using MptcpAnycast.Lab.Tests.Infrastructure;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Lab.Tests.PathManagement;

/// <summary>The transport's control path on the real userspace path manager, when its event socket fails under it.</summary>
[Collection(PathManagerLabCollection.Name)]
public sealed class EventResubscriptionLabTests
{
    [LabFact]
    public async Task After_the_event_socket_fails_the_control_path_keeps_announcing_subscribes_again_and_every_connection_joins()
    {
        using var lab = new PathManagerLab();
        using var listener = lab.Listen(new IPEndPoint(IPAddress.Any, 5000)); // also takes the joins to the unicast address
        var anycast = new IPEndPoint(PathManagerLab.Anycast, 5000);
        NetlinkPathManager manager = lab.Server.Run(() => NetlinkPathManager.Open(PathManagerClientOptions.Default));
        MptcpAnycastSettings settings = MptcpAnycastSettings.Validate(
            new MptcpAnycastOptions { AnycastAddresses = [PathManagerLab.Anycast.ToString()], UnicastAddresses = [PathManagerLab.Unicast.ToString()] },
            [PathManagerLab.Unicast]);
        await using var control = new ControlPath(settings, AnnouncementMode.Userspace, manager, null, NullLogger.Instance,
            new MptcpAnycastMetrics(MetricRecorder.CreateFactory()), TimeProvider.System);
        control.Start();
        Assert.True(control.IsFollowingEvents);
        var connections = new List<PathManagerLab.Connection>();
        TrackedConnection Accept(PathManagerLab.Connection c, string id)
        {
            var tracked = new TrackedConnection(c.Server, MptcpSocket.GetConnectionInfo(c.Server), id, (IPEndPoint)c.Server.LocalEndPoint!,
                (IPEndPoint)c.Server.RemoteEndPoint!, DateTimeOffset.UtcNow);
            control.OnAccepted(tracked);
            return tracked;
        }

        try
        {
            // 1. Events followed: the join is heard.
            connections.Add(await lab.ConnectAsync(listener, anycast));
            TrackedConnection before = Accept(connections[^1], "before");
            Assert.True(await Eventually.WaitAsync(() => before.State == UnicastSubflowState.Joined, TaskTimeoutExtensions.DefaultTimeout), before.StateReason);

            // 2. The event socket fails: the control path falls back to the sockets, and a connection accepted now is
            //    announced and joins (the announcement itself subscribes the client again, so the kernel keeps the join).
            manager.Client.CloseEventSocketBehindTheClientsBack();
            Assert.True(await Eventually.WaitAsync(() => !control.IsFollowingEvents, TaskTimeoutExtensions.DefaultTimeout), "the control path did not notice");
            connections.Add(await lab.ConnectAsync(listener, anycast));
            TrackedConnection during = Accept(connections[^1], "during");
            Assert.True(await Eventually.WaitAsync(() => during.State == UnicastSubflowState.Joined, TaskTimeoutExtensions.DefaultTimeout), during.StateReason);

            // 3. Subscribed again (first try after 100 ms): joins are heard as events again.
            Assert.True(await Eventually.WaitAsync(() => control.IsFollowingEvents, TaskTimeoutExtensions.DefaultTimeout), "never subscribed again");
            Assert.True(manager.Client.IsSubscribedToEvents);
            connections.Add(await lab.ConnectAsync(listener, anycast));
            TrackedConnection after = Accept(connections[^1], "after");
            Assert.True(await Eventually.WaitAsync(() => after.State == UnicastSubflowState.Joined, TaskTimeoutExtensions.DefaultTimeout), after.StateReason);

            Assert.All(connections, c => Assert.Equal(2, MptcpSocket.GetSubflows(c.Server).Length));
        }
        finally
        {
            connections.ForEach(c => c.Dispose());
        }
    }
}
