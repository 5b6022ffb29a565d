using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using BenchmarkDotNet.Attributes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using MptcpAnycast.Kestrel;
using MptcpAnycast.Kestrel.Announcing;
using MptcpAnycast.Kestrel.Diagnostics;
using MptcpAnycast.Kestrel.Internal;

namespace MptcpAnycast.Benchmarks;

/// <summary>
/// What the transport adds to one accepted connection, from accept to close: the announcer reads the socket's MPTCP
/// state (one getsockopt), decides, tracks the connection and starts its announcement through the resilience pipeline
/// (here a path manager that answers at once, so the kernel's part is left out: see <c>announce-roundtrip</c>), then
/// forgets it on close. Measured on one real accepted MPTCP loopback socket, accepted again and again.
/// </summary>
[MemoryDiagnoser]
public class AcceptPathBenchmarks
{
    private LoopbackConnections _connections = null!;
    private Socket _server = null!;
    private Socket _tcpServer = null!;
    private UnicastAnnouncer _announcer = null!;
    private UnicastAnnouncer _noAnnouncements = null!;
    private InstantPathManager _pathManager = null!;

    [GlobalSetup]
    public void Setup()
    {
        _connections = new LoopbackConnections();
        _server = _connections.MptcpServer;
        _tcpServer = _connections.TcpServer;

        IMeterFactory meters = new ServiceCollection().AddMetrics().BuildServiceProvider().GetRequiredService<IMeterFactory>();
        MptcpAnycastSettings settings = MptcpAnycastSettings.Validate(
            new MptcpAnycastOptions { Mode = AnnouncementMode.Userspace, UnicastAddresses = ["127.0.0.2"] }, [IPAddress.Parse("127.0.0.2")]);
        _pathManager = new InstantPathManager();
        _announcer = new UnicastAnnouncer(settings, AnnouncementMode.Userspace, _pathManager, null, NullLogger.Instance, new MptcpAnycastMetrics(meters), TimeProvider.System);
        MptcpAnycastSettings none = MptcpAnycastSettings.Validate(new MptcpAnycastOptions { Mode = AnnouncementMode.None });
        _noAnnouncements = new UnicastAnnouncer(none, AnnouncementMode.None, null, null, NullLogger.Instance, new MptcpAnycastMetrics(meters), TimeProvider.System);

        // Check the answer before timing it.
        MptcpConnectionState state = _announcer.OnAccepted(_server, "check");
        if (!state.IsMptcp || state.Token == 0 || state.State != UnicastSubflowState.Announced || _pathManager.Announcements != 1 || _announcer.TrackedConnections != 1)
        {
            throw new InvalidOperationException($"accept path: {state.State} ({state.StateReason}), {_pathManager.Announcements} announcements");
        }

        _announcer.OnClosed(state);
        MptcpConnectionState tcp = _announcer.OnAccepted(_tcpServer, "check-tcp");
        if (tcp.IsMptcp || _announcer.TrackedConnections != 0 || _pathManager.Announcements != 1)
        {
            throw new InvalidOperationException($"accept path, TCP: {tcp.State} ({tcp.StateReason})");
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _announcer.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _noAnnouncements.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _connections.Dispose();
    }

    /// <summary>Userspace mode: accept, announce (instant path manager), close.</summary>
    [Benchmark(Baseline = true)]
    public UnicastSubflowState Mptcp_announced()
    {
        MptcpConnectionState state = _announcer.OnAccepted(_server, "c");
        _announcer.OnClosed(state);
        return state.State;
    }

    /// <summary>Mode None: the transport's bookkeeping without an announcement.</summary>
    [Benchmark]
    public bool Mptcp_not_announced()
    {
        MptcpConnectionState state = _noAnnouncements.OnAccepted(_server, "c");
        _noAnnouncements.OnClosed(state);
        return state.IsMptcp;
    }

    /// <summary>A plain TCP client: the fallback is recognised and nothing is tracked.</summary>
    [Benchmark]
    public bool Tcp_fallback()
    {
        MptcpConnectionState state = _announcer.OnAccepted(_tcpServer, "c");
        _announcer.OnClosed(state);
        return state.IsMptcp;
    }
}
