using System.Net.Sockets;
using BenchmarkDotNet.Attributes;
using MptcpAnycast;

namespace MptcpAnycast.Benchmarks;

/// <summary>Reading an accepted connection's MPTCP state: what the transport does once per connection.</summary>
[MemoryDiagnoser]
public class SocketInfoBenchmarks
{
    private LoopbackConnections _connections = null!;
    private Socket _server = null!;
    private Socket _tcpServer = null!;

    [GlobalSetup]
    public void Setup()
    {
        _connections = new LoopbackConnections();
        _server = _connections.MptcpServer;
        _tcpServer = _connections.TcpServer;

        // Check the answer before timing it.
        MptcpConnectionInfo info = MptcpSocket.GetConnectionInfo(_server);
        if (!info.IsMptcp || info.Token == 0 || MptcpSocket.GetConnectionInfo(_tcpServer).IsMptcp || MptcpSocket.GetSubflows(_server).Length != 1)
        {
            throw new InvalidOperationException($"unexpected connection state: {info}");
        }
    }

    [GlobalCleanup]
    public void Cleanup() => _connections.Dispose();

    [Benchmark(Baseline = true)]
    public uint ConnectionInfo_Mptcp() => MptcpSocket.GetConnectionInfo(_server).Token;

    [Benchmark]
    public MptcpFallbackReason ConnectionInfo_TcpFallback() => MptcpSocket.GetConnectionInfo(_tcpServer).FallbackReason;

    [Benchmark]
    public int Subflows_Mptcp() => MptcpSocket.GetSubflows(_server).Length;
}
