using System.Net;
using System.Net.Sockets;
using BenchmarkDotNet.Attributes;
using MptcpAnycast;

namespace MptcpAnycast.Benchmarks;

/// <summary>Reading an accepted connection's MPTCP state: what the transport does once per connection.</summary>
[MemoryDiagnoser]
public class SocketInfoBenchmarks
{
    private Socket _listener = null!;
    private Socket _client = null!;
    private Socket _server = null!;
    private Socket _tcpServer = null!;
    private Socket _tcpClient = null!;

    [GlobalSetup]
    public void Setup()
    {
        _listener = MptcpSocket.CreateListener(new IPEndPoint(IPAddress.Loopback, 0));
        _client = MptcpSocket.Create(AddressFamily.InterNetwork);
        _client.Connect(_listener.LocalEndPoint!);
        _server = _listener.Accept();
        _tcpClient = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _tcpClient.Connect(_listener.LocalEndPoint!);
        _tcpServer = _listener.Accept();

        // Check the answer before timing it.
        MptcpConnectionInfo info = MptcpSocket.GetConnectionInfo(_server);
        if (!info.IsMptcp || info.Token == 0 || MptcpSocket.GetConnectionInfo(_tcpServer).IsMptcp || MptcpSocket.GetSubflows(_server).Length != 1)
        {
            throw new InvalidOperationException($"unexpected connection state: {info}");
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _server.Dispose();
        _client.Dispose();
        _tcpServer.Dispose();
        _tcpClient.Dispose();
        _listener.Dispose();
    }

    [Benchmark(Baseline = true)]
    public uint ConnectionInfo_Mptcp() => MptcpSocket.GetConnectionInfo(_server).Token;

    [Benchmark]
    public MptcpFallbackReason ConnectionInfo_TcpFallback() => MptcpSocket.GetConnectionInfo(_tcpServer).FallbackReason;

    [Benchmark]
    public int Subflows_Mptcp() => MptcpSocket.GetSubflows(_server).Length;
}
