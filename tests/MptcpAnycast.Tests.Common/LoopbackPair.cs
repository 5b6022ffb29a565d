using System.Net;
using System.Net.Sockets;

namespace MptcpAnycast.Tests.Common;

/// <summary>
/// One connection over loopback: the listener, the client and the accepted server socket. The listener is MPTCP; the
/// client is MPTCP or plain TCP; IPv4 (127.0.0.1) or IPv6 (::1).
/// </summary>
public sealed class LoopbackPair : IDisposable
{
    private LoopbackPair(Socket listener, Socket client, Socket server)
    {
        Listener = listener;
        Client = client;
        Server = server;
    }

    public Socket Listener { get; }

    public Socket Client { get; }

    public Socket Server { get; }

    /// <param name="family">IPv4 or IPv6 loopback.</param>
    /// <param name="mptcpClient">An MPTCP client (true) or a plain TCP one (false).</param>
    public static async Task<LoopbackPair> ConnectAsync(AddressFamily family = AddressFamily.InterNetwork, bool mptcpClient = true)
    {
        IPAddress loopback = family == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Loopback : IPAddress.Loopback;
        Socket listener = MptcpSocket.CreateListener(new IPEndPoint(loopback, 0));
        Socket? client = null;
        try
        {
            client = mptcpClient ? MptcpSocket.Create(family) : new Socket(family, SocketType.Stream, ProtocolType.Tcp);
            Task<Socket> accept = listener.AcceptAsync().WithTimeout(what: "accept on loopback");
            await client.ConnectAsync(listener.LocalEndPoint!).WithTimeout(what: "connect on loopback");
            return new LoopbackPair(listener, client, await accept);
        }
        catch
        {
            client?.Dispose();
            listener.Dispose();
            throw;
        }
    }

    /// <summary>Sends one byte each way, so both ends have seen data (MPTCP then has its keys and token on both sides).</summary>
    public async Task ExchangeAsync()
    {
        byte[] one = new byte[1];
        await Client.SendAsync(new byte[] { 1 }, SocketFlags.None).WithTimeout();
        await Server.ReceiveAsync(one, SocketFlags.None).WithTimeout();
        await Server.SendAsync(new byte[] { 2 }, SocketFlags.None).WithTimeout();
        await Client.ReceiveAsync(one, SocketFlags.None).WithTimeout();
    }

    public void Dispose()
    {
        Server.Dispose();
        Client.Dispose();
        Listener.Dispose();
    }
}
