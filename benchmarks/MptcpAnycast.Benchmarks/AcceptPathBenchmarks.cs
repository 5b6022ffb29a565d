using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using BenchmarkDotNet.Attributes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using MptcpAnycast.Kestrel;
using MptcpAnycast.Kestrel.Announcing;
using MptcpAnycast.Kestrel.Connections;
using MptcpAnycast.Kestrel.Control;
using MptcpAnycast.Kestrel.Diagnostics;

namespace MptcpAnycast.Benchmarks;

/// <summary>
/// What the transport adds per accepted connection, in its two places, on one real accepted MPTCP (or plain TCP)
/// loopback socket, accepted again and again:
/// <list type="bullet">
/// <item>on Kestrel's accept loop: read the socket's MPTCP state (one getsockopt; two for plain TCP) and make the
/// connection's tracking object and feature (the listener then queues it for the control loop: one lock-free enqueue,
/// not timed here);</item>
/// <item>on the control loop: decide, track, announce through the resilience pipeline (a path manager that answers at
/// once, so the kernel's part is left out: see <c>announce-roundtrip</c>), and forget it at close.</item>
/// </list>
/// </summary>
[MemoryDiagnoser]
public class AcceptPathBenchmarks
{
    private LoopbackConnections _connections = null!;
    private Socket _server = null!;
    private Socket _tcpServer = null!;
    private IPEndPoint _local = null!;
    private IPEndPoint _remote = null!;
    private MptcpConnectionInfo _info;
    private InstantPathManager _pathManager = null!;
    private ControlPath _control = null!;
    private (UnicastAnnouncer Announcer, JoinTracker Joins, ConnectionRegistry Registry) _announcing;
    private (UnicastAnnouncer Announcer, JoinTracker Joins, ConnectionRegistry Registry) _notAnnouncing;

    [GlobalSetup]
    public void Setup()
    {
        _connections = new LoopbackConnections();
        _server = _connections.MptcpServer;
        _tcpServer = _connections.TcpServer;
        _local = (IPEndPoint)_server.LocalEndPoint!;
        _remote = (IPEndPoint)_server.RemoteEndPoint!;
        _info = MptcpSocket.GetConnectionInfo(_server);

        IMeterFactory meters = new ServiceCollection().AddMetrics().BuildServiceProvider().GetRequiredService<IMeterFactory>();
        MptcpAnycastSettings settings = MptcpAnycastSettings.Validate(
            new MptcpAnycastOptions { Mode = AnnouncementMode.Userspace, UnicastAddresses = ["127.0.0.2"] }, [IPAddress.Parse("127.0.0.2")]);
        _pathManager = new InstantPathManager();
        _control = new ControlPath(settings, AnnouncementMode.Userspace, _pathManager, null, NullLogger.Instance, new MptcpAnycastMetrics(meters), TimeProvider.System);
        _announcing = ControlLoopParts(settings, AnnouncementMode.Userspace, _pathManager, meters);
        _notAnnouncing = ControlLoopParts(MptcpAnycastSettings.Validate(new MptcpAnycastOptions { Mode = AnnouncementMode.None }), AnnouncementMode.None, null, meters);

        // Check the answers before timing them.
        TrackedConnection announced = Accepted();
        _announcing.Announcer.OnAccepted(announced);
        if (!announced.IsMptcp || announced.Token == 0 || announced.State != UnicastSubflowState.Announced || _pathManager.Announcements != 1
            || _announcing.Registry.Count != 1)
        {
            throw new InvalidOperationException($"control loop: {announced.State} ({announced.StateReason}), {_pathManager.Announcements} announcements");
        }

        _announcing.Joins.OnClosed(announced);
        var tcp = (MptcpConnectionFeature)AcceptLoop_tcp();
        _announcing.Announcer.OnAccepted(tcp.Connection);
        if (tcp.IsMptcp || _announcing.Registry.Count != 1 || _pathManager.Announcements != 1)
        {
            throw new InvalidOperationException($"accept path, TCP: {tcp.State} ({tcp.StateReason}); {_announcing.Registry.Count} tracked");
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _control.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _connections.Dispose();
    }

    /// <summary>Kestrel's accept loop, MPTCP client: what the listener does besides Kestrel's own work.</summary>
    [Benchmark(Baseline = true)]
    public IMptcpConnectionFeature AcceptLoop_mptcp()
    {
        var connection = new TrackedConnection(_server, MptcpSocket.GetConnectionInfo(_server), "c", _local, _remote, DateTimeOffset.UtcNow);
        return new MptcpConnectionFeature(connection, _control);
    }

    /// <summary>Kestrel's accept loop, plain TCP client: the fallback is recognised (two getsockopts).</summary>
    [Benchmark]
    public IMptcpConnectionFeature AcceptLoop_tcp()
    {
        var connection = new TrackedConnection(_tcpServer, MptcpSocket.GetConnectionInfo(_tcpServer), "c", _local, _remote, DateTimeOffset.UtcNow);
        return new MptcpConnectionFeature(connection, _control);
    }

    /// <summary>The control loop, Userspace mode: decide, track, announce (instant path manager), then forget at close.</summary>
    [Benchmark]
    public UnicastSubflowState ControlLoop_announced()
    {
        TrackedConnection connection = Accepted();
        _announcing.Announcer.OnAccepted(connection);
        _announcing.Joins.OnClosed(connection);
        return connection.State;
    }

    /// <summary>The control loop, Mode None: the connection is counted and nothing else.</summary>
    [Benchmark]
    public UnicastSubflowState ControlLoop_not_announced()
    {
        TrackedConnection connection = Accepted();
        _notAnnouncing.Announcer.OnAccepted(connection);
        _notAnnouncing.Joins.OnClosed(connection);
        return connection.State;
    }

    private TrackedConnection Accepted() => new(_server, _info, "c", _local, _remote, DateTimeOffset.UtcNow);

    private static (UnicastAnnouncer, JoinTracker, ConnectionRegistry) ControlLoopParts(MptcpAnycastSettings settings, AnnouncementMode mode,
        IPathManager? pathManager, IMeterFactory meters)
    {
        var registry = new ConnectionRegistry();
        var metrics = new MptcpAnycastMetrics(meters);
        var joins = new JoinTracker(settings, registry, hasAfterJoinCommands: false, metrics, NullLogger.Instance, TimeProvider.System,
            static c => c.GetSubflows(), static _ => { });
        joins.IsFollowingEvents = true;
        var announcer = new UnicastAnnouncer(settings, mode, settings.CreatePolicy(), pathManager, "no path manager", registry, joins,
            new ControlPlanePipeline(TimeSpan.FromSeconds(15), NullLogger.Instance), metrics, NullLogger.Instance, TimeProvider.System);
        return (announcer, joins, registry);
    }
}
