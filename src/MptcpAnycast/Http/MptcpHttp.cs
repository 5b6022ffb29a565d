using System.Net;
using System.Net.Sockets;

namespace MptcpAnycast;

/// <summary>
/// An <see cref="HttpClient"/> that connects over Multipath TCP. A plain <see cref="HttpClient"/> speaks TCP only;
/// this one opens MPTCP sockets, so the server can announce another address and the client's kernel can open a
/// second subflow to it.
/// </summary>
public static class MptcpHttp
{
    /// <summary>
    /// Creates a <see cref="SocketsHttpHandler"/> whose connections are MPTCP.
    /// </summary>
    /// <param name="fallback">
    /// What to do when this host has no MPTCP: <see cref="MptcpFallback.Tcp"/> (the default) connects over TCP,
    /// <see cref="MptcpFallback.None"/> fails the request with a <see cref="SocketException"/>.
    /// </param>
    /// <param name="dualStack">
    /// When true (the default), IPv4 destinations are reached from an IPv6 dual-stack socket (<c>::ffff:a.b.c.d</c>),
    /// which lets the connection accept an IPv6 address announced by an IPv4 server. Falls back to an IPv4 socket
    /// where IPv6 is unavailable.
    /// </param>
    public static SocketsHttpHandler CreateHandler(MptcpFallback fallback = MptcpFallback.Tcp, bool dualStack = true)
    {
        var connector = new MptcpConnector(fallback, dualStack);
        return new SocketsHttpHandler
        {
            ConnectCallback = connector.ConnectAsync,
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
        };
    }

    /// <summary>Connects an MPTCP socket to <paramref name="endPoint"/>, trying every address of a host name in turn.</summary>
    /// <returns>The connected socket. The caller owns it.</returns>
    public static async ValueTask<Socket> ConnectAsync(EndPoint endPoint, MptcpFallback fallback = MptcpFallback.Tcp, bool dualStack = true,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(endPoint);
        return await new MptcpConnector(fallback, dualStack).ConnectSocketAsync(endPoint, cancellationToken).ConfigureAwait(false);
    }

    private sealed class MptcpConnector(MptcpFallback fallback, bool dualStack)
    {
        public async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
        {
            Socket socket = await ConnectSocketAsync(context.DnsEndPoint, cancellationToken).ConfigureAwait(false);
            return new NetworkStream(socket, ownsSocket: true);
        }

        public async ValueTask<Socket> ConnectSocketAsync(EndPoint endPoint, CancellationToken cancellationToken)
        {
            IPAddress[] addresses;
            int port;
            switch (endPoint)
            {
                case IPEndPoint ip:
                    addresses = [ip.Address];
                    port = ip.Port;
                    break;
                case DnsEndPoint dns when IPAddress.TryParse(dns.Host, out IPAddress? literal):
                    addresses = [literal];
                    port = dns.Port;
                    break;
                case DnsEndPoint dns:
                    addresses = await Dns.GetHostAddressesAsync(dns.Host, cancellationToken).ConfigureAwait(false);
                    port = dns.Port;
                    break;
                default:
                    throw new ArgumentException($"MPTCP connects to IP or DNS end points, not {endPoint.GetType().Name} '{endPoint}'.", nameof(endPoint));
            }

            if (addresses.Length == 0)
            {
                throw new SocketException((int)SocketError.HostNotFound, $"'{endPoint}' has no address.");
            }

            Exception? last = null;
            foreach (IPAddress address in addresses)
            {
                Socket socket = CreateFor(address);
                try
                {
                    socket.NoDelay = true;
                    IPAddress target = socket.AddressFamily == AddressFamily.InterNetworkV6 && address.AddressFamily == AddressFamily.InterNetwork
                        ? address.MapToIPv6()
                        : address;
                    await socket.ConnectAsync(new IPEndPoint(target, port), cancellationToken).ConfigureAwait(false);
                    return socket;
                }
                catch (Exception ex) when (ex is SocketException || (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested))
                {
                    socket.Dispose();
                    last = ex;
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            }

            throw last!;
        }

        private Socket CreateFor(IPAddress address)
        {
            if (address.AddressFamily == AddressFamily.InterNetwork && dualStack)
            {
                Socket? v6 = TryCreateDualStack();
                if (v6 is not null)
                {
                    return v6;
                }
            }

            return MptcpSocket.Create(address.AddressFamily, fallback);
        }

        private Socket? TryCreateDualStack()
        {
            Socket socket;
            try
            {
                socket = MptcpSocket.Create(AddressFamily.InterNetworkV6, fallback);
            }
            catch (SocketException)
            {
                return null;
            }

            try
            {
                socket.DualMode = true;
                return socket;
            }
            catch (SocketException)
            {
                socket.Dispose();
                return null;
            }
        }
    }
}
