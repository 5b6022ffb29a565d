using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Kestrel;
using MptcpAnycast.Kestrel.Connections;
using MptcpAnycast.Kestrel.Control;
using MptcpAnycast.Kestrel.Diagnostics;

namespace MptcpAnycast.Tests.Control;

/// <summary>
/// The transport's control path against real loopback MPTCP sockets and a <see cref="FakePathManager"/>: connections are
/// accepted as the listener does (the same facts, the same feature), and a test can stand in for a client's join, which
/// loopback in the test's own namespace cannot make. Everything it made is closed on dispose.
/// </summary>
internal sealed class ControlPathHarness : IAsyncDisposable
{
    public static readonly IPAddress UnicastAddress = IPAddress.Parse("127.0.0.2");

    private readonly List<LoopbackPair> _pairs = [];
    private readonly ConcurrentDictionary<uint, bool> _joined = new();
    private int _connections;

    /// <param name="options">The transport's options; the unicast address defaults to 127.0.0.2 (loopback connections count as anycast).</param>
    /// <param name="mode">The mode in effect.</param>
    /// <param name="withPathManager">False: no path manager at all (it is unavailable).</param>
    /// <param name="time">The clock (a FakeTimeProvider drives the timers); default the system's.</param>
    /// <param name="tuning">Knobs beyond the defaults (short circuit breaks); the subflow reader is the harness's own.</param>
    public ControlPathHarness(MptcpAnycastOptions? options = null, AnnouncementMode mode = AnnouncementMode.Userspace, bool withPathManager = true,
        TimeProvider? time = null, ControlPathTuning? tuning = null)
    {
        options ??= new MptcpAnycastOptions();
        if (options.UnicastAddresses.Count == 0 && mode != AnnouncementMode.None)
        {
            options.UnicastAddresses = ["127.0.0.2"];
        }

        Settings = MptcpAnycastSettings.Validate(options, [UnicastAddress]);
        Time = time ?? TimeProvider.System;
        PathManager = new FakePathManager();
        var meters = MetricRecorder.CreateFactory();
        Metrics = new MetricRecorder(meters);
        Control = new ControlPath(Settings, mode, withPathManager ? PathManager : null, withPathManager ? null : "no path manager in this test",
            Logger, new MptcpAnycastMetrics(meters), Time, (tuning ?? ControlPathTuning.Default) with { ReadSubflows = ReadSubflows });
    }

    public MptcpAnycastSettings Settings { get; }

    public FakePathManager PathManager { get; }

    public ControlPath Control { get; }

    public TimeProvider Time { get; }

    public MetricRecorder Metrics { get; }

    public RecordingLogger Logger { get; } = new();

    /// <summary>Starts the control path (subscribes the join tracker, starts the loop and its timers).</summary>
    public ControlPathHarness Start()
    {
        Control.Start();
        return this;
    }

    /// <summary>A new loopback connection, accepted the way the listener accepts one; returns the feature Kestrel would carry.</summary>
    public async Task<MptcpConnectionFeature> AcceptAsync(bool mptcpClient = true, AddressFamily family = AddressFamily.InterNetwork)
    {
        LoopbackPair pair = await LoopbackPair.ConnectAsync(family, mptcpClient);
        lock (_pairs)
        {
            _pairs.Add(pair);
        }

        var connection = new TrackedConnection(pair.Server, MptcpSocket.GetConnectionInfo(pair.Server), $"c{Interlocked.Increment(ref _connections)}",
            pair.Server.LocalEndPoint as IPEndPoint, pair.Server.RemoteEndPoint as IPEndPoint, Time.GetUtcNow());
        var feature = new MptcpConnectionFeature(connection, Control);
        Control.OnAccepted(connection);
        return feature;
    }

    /// <summary>From now on the connection's socket shows a subflow to the unicast address, as after a real join.</summary>
    public void JoinInSocket(TrackedConnection connection) => _joined[connection.Token] = true;

    /// <summary>The client joined and the kernel says so: the event a real join makes.</summary>
    public void JoinWithEvent(TrackedConnection connection) =>
        PathManager.EmitJoin(connection.Token, new IPEndPoint(UnicastAddress, connection.Local!.Port));

    public async ValueTask DisposeAsync()
    {
        await Control.DisposeAsync();
        lock (_pairs)
        {
            _pairs.ForEach(p => p.Dispose());
        }

        Metrics.Dispose();
    }

    private IReadOnlyList<MptcpSubflow> ReadSubflows(TrackedConnection connection)
    {
        var anycast = new MptcpSubflow(connection.Local!, connection.Remote!);
        return _joined.ContainsKey(connection.Token)
            ? [anycast, new MptcpSubflow(new IPEndPoint(UnicastAddress, connection.Local!.Port), new IPEndPoint(connection.Remote!.Address, 40000))]
            : [anycast];
    }
}
