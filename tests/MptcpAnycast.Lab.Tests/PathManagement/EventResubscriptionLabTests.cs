using System.Diagnostics.Metrics;
using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using MptcpAnycast.Kestrel;
using MptcpAnycast.Kestrel.Announcing;
using MptcpAnycast.Kestrel.Diagnostics;
using MptcpAnycast.Kestrel.Internal;
using MptcpAnycast.Lab.Tests.Infrastructure;

namespace MptcpAnycast.Lab.Tests.PathManagement;

/// <summary>The transport's announcer on the real userspace path manager, when its event socket fails under it.</summary>
[Collection(PathManagerLabCollection.Name)]
public sealed class EventResubscriptionLabTests
{
    [LabFact]
    public async Task After_the_event_socket_fails_the_announcer_keeps_announcing_subscribes_again_and_every_connection_joins()
    {
        using var lab = new PathManagerLab();
        using var listener = lab.Listen(new IPEndPoint(IPAddress.Any, 5000)); // also takes the joins to the unicast address
        var anycast = new IPEndPoint(PathManagerLab.Anycast, 5000);
        (KernelPathManager manager, string? eventsProblem) = await lab.Server.Run(
            () => KernelPathManager.OpenAsync(subscribe: true, eventReceiveBufferSize: null, CancellationToken.None)).WithTimeout();
        Assert.Null(eventsProblem);
        MptcpAnycastSettings settings = MptcpAnycastSettings.Validate(
            new MptcpAnycastOptions { AnycastAddresses = [PathManagerLab.Anycast.ToString()], UnicastAddresses = [PathManagerLab.Unicast.ToString()] },
            [PathManagerLab.Unicast]);
        IMeterFactory meters = new ServiceCollection().AddMetrics().BuildServiceProvider().GetRequiredService<IMeterFactory>();
        await using var announcer = new UnicastAnnouncer(settings, AnnouncementMode.Userspace, manager, null, NullLogger.Instance,
            new MptcpAnycastMetrics(meters), TimeProvider.System);
        var connections = new List<PathManagerLab.Connection>();
        try
        {
            // 1. Events followed: the join is heard.
            connections.Add(await lab.ConnectAsync(listener, anycast));
            MptcpConnectionState before = announcer.OnAccepted(connections[^1].Server, "before");
            Assert.True(await Eventually.WaitAsync(() => before.State == UnicastSubflowState.Joined, TaskTimeoutExtensions.DefaultTimeout), before.StateReason);

            // 2. The event socket fails: the announcer falls back to the sockets, and a connection accepted now is
            //    announced and joins (the announcement itself subscribes the client again, so the kernel keeps the join).
            manager.Client.CloseEventSocketBehindTheClientsBack();
            Assert.True(await Eventually.WaitAsync(() => !announcer.IsFollowingEvents, TaskTimeoutExtensions.DefaultTimeout), "the announcer did not notice");
            connections.Add(await lab.ConnectAsync(listener, anycast));
            MptcpConnectionState during = announcer.OnAccepted(connections[^1].Server, "during");
            Assert.True(await Eventually.WaitAsync(() => during.State == UnicastSubflowState.Joined, TaskTimeoutExtensions.DefaultTimeout), during.StateReason);

            // 3. Subscribed again (first try after 100 ms): joins are heard as events again.
            Assert.True(await Eventually.WaitAsync(() => announcer.IsFollowingEvents, TaskTimeoutExtensions.DefaultTimeout), "never subscribed again");
            Assert.True(manager.Client.IsSubscribedToEvents);
            connections.Add(await lab.ConnectAsync(listener, anycast));
            MptcpConnectionState after = announcer.OnAccepted(connections[^1].Server, "after");
            Assert.True(await Eventually.WaitAsync(() => after.State == UnicastSubflowState.Joined, TaskTimeoutExtensions.DefaultTimeout), after.StateReason);

            Assert.All(connections, c => Assert.Equal(2, MptcpSocket.GetSubflows(c.Server).Length));
        }
        finally
        {
            connections.ForEach(c => c.Dispose());
        }
    }
}
