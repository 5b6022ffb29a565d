using System.Net;
using System.Net.Sockets;

namespace MptcpAnycast.Benchmarks;

/// <summary>
/// One MPTCP connection and one plain TCP connection on loopback, both accepted by an MPTCP listener (the TCP client
/// makes it fall back): the accepted sockets are what the transport reads once per connection.
/// </summary>
internal sealed class LoopbackConnections : IDisposable
{
    private readonly Socket _listener;
    private readonly Socket _mptcpClient;
    private readonly Socket _tcpClient;

    public LoopbackConnections()
    {
        _listener = MptcpSocket.CreateListener(new IPEndPoint(IPAddress.Loopback, 0));
        _mptcpClient = MptcpSocket.Create(AddressFamily.InterNetwork);
        _mptcpClient.Connect(_listener.LocalEndPoint!);
        MptcpServer = Accept();
        _tcpClient = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _tcpClient.Connect(_listener.LocalEndPoint!);
        TcpServer = Accept();
    }

    /// <summary>The server side of the MPTCP connection.</summary>
    public Socket MptcpServer { get; }

    /// <summary>The server side of the plain TCP connection.</summary>
    public Socket TcpServer { get; }

    private Socket Accept()
    {
        Socket server = _listener.Accept();
        _ = server.LocalEndPoint; // cached by the Socket, as Kestrel reads them anyway
        _ = server.RemoteEndPoint;
        return server;
    }

    public void Dispose()
    {
        MptcpServer.Dispose();
        _mptcpClient.Dispose();
        TcpServer.Dispose();
        _tcpClient.Dispose();
        _listener.Dispose();
    }
}
