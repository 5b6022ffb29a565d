using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Rescue;
using MptcpAnycast.Rescue.Agent;
using MptcpAnycast.Rescue.Bpf;
using MptcpAnycast.Rescue.Ownership;
using static MptcpAnycast.Tests.Common.TestPackets;

namespace MptcpAnycast.Tests.Rescue.Agent;

/// <summary>
/// The owner a lookup found is written unless the flow's tuple opened here meanwhile, asked of this host's own socket
/// table as the agent asks it; the program then tunnels the flow, or keeps the new local connection's segments.
/// </summary>
public sealed class OwnerRecorderTests : IDisposable
{
    private const int TcActPass = -1, TcActRedirect = 7;
    private static readonly IPAddress Owner4 = IPAddress.Parse("198.51.100.1");

    private readonly RescueDataplane _dataplane = RescueDataplane.Load();
    private readonly SocketTableLookup _socketTable = SocketTableLookup.Open();
    private readonly OwnerRecorder _recorder;

    public OwnerRecorderTests()
    {
        _dataplane.Configure(new RescueDataplaneConfig { LocalIPv4 = IPAddress.Parse("198.51.100.2") }, enabled: true);
        _dataplane.SetAnycast([IPAddress.Loopback]);
        _dataplane.SetPeers([Owner4]);
        _recorder = new OwnerRecorder(_dataplane, flow => _socketTable.Lookup(flow).IsOwned);
    }

    public void Dispose()
    {
        _socketTable.Dispose();
        _dataplane.Dispose();
    }

    [Fact]
    public async Task An_owner_for_a_tuple_that_opened_here_meanwhile_is_taken_back_and_its_segments_stay_local()
    {
        using LoopbackPair pair = await LoopbackPair.ConnectAsync(AddressFamily.InterNetwork, mptcpClient: false);
        var client = (IPEndPoint)pair.Client.LocalEndPoint!;
        var server = (IPEndPoint)pair.Server.LocalEndPoint!;
        var flow = new TcpFlow(client.Address, client.Port, server.Address, server.Port);

        Assert.False(_recorder.Record(flow, Owner4));
        Assert.Null(_dataplane.GetOwner(flow));
        Assert.Equal(TcActPass, Run(Tcp(client.Address, client.Port, server.Address, server.Port, Ack)));
        Assert.Equal(1UL, _dataplane.ReadCounters().LocalSocket);
    }

    [Fact]
    public async Task An_owner_for_a_tuple_with_only_a_listener_here_is_kept_and_tunnelled_to()
    {
        using LoopbackPair pair = await LoopbackPair.ConnectAsync(AddressFamily.InterNetwork, mptcpClient: false);
        int listenerPort = ((IPEndPoint)pair.Listener.LocalEndPoint!).Port;
        var flow = new TcpFlow(IPAddress.Loopback, 1, IPAddress.Loopback, listenerPort); // no connection from port 1

        Assert.True(_recorder.Record(flow, Owner4));
        Assert.Equal(Owner4, _dataplane.GetOwner(flow));
        Assert.Equal(TcActRedirect, Run(Tcp(IPAddress.Loopback, 1, IPAddress.Loopback, listenerPort, Ack)));
    }

    [Fact]
    public async Task Entries_for_tuples_that_opened_here_while_no_program_ran_are_taken_back_at_start()
    {
        // An owner map pinned by an earlier agent, and a connection on one of its tuples made while no program ran.
        using LoopbackPair pair = await LoopbackPair.ConnectAsync(AddressFamily.InterNetwork, mptcpClient: false);
        var client = (IPEndPoint)pair.Client.LocalEndPoint!;
        var server = (IPEndPoint)pair.Server.LocalEndPoint!;
        var local = new TcpFlow(client.Address, client.Port, server.Address, server.Port);
        var elsewhere = new TcpFlow(IPAddress.Loopback, 1, IPAddress.Loopback, server.Port);
        _dataplane.SetOwner(local, Owner4);
        _dataplane.SetOwner(elsewhere, Owner4);

        Assert.Equal(1, _recorder.ForgetLocal());
        Assert.Null(_dataplane.GetOwner(local));
        Assert.Equal(Owner4, _dataplane.GetOwner(elsewhere));
        Assert.Equal(TcActPass, Run(Tcp(client.Address, client.Port, server.Address, server.Port, Ack)));
        Assert.Equal(TcActRedirect, Run(Tcp(IPAddress.Loopback, 1, IPAddress.Loopback, server.Port, Ack)));
    }

    private int Run(byte[] frame) => _dataplane.TestRun(ingress: true, frame, new byte[frame.Length + 128], out _, repeat: 1, out _);
}
