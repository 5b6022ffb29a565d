using System.Net;

namespace MptcpAnycast.Rescue;

/// <summary>
/// One TCP connection as a POP sees it on the wire, client to server: the client's address and port, and the
/// server's (anycast) address and port. Both addresses are of one family; an IPv4-mapped IPv6 address is kept as
/// IPv4, so a flow has one spelling.
/// </summary>
internal readonly record struct TcpFlow
{
    public TcpFlow(IPAddress clientAddress, int clientPort, IPAddress serverAddress, int serverPort)
    {
        ArgumentNullException.ThrowIfNull(clientAddress);
        ArgumentNullException.ThrowIfNull(serverAddress);
        clientAddress = clientAddress.Unmapped();
        serverAddress = serverAddress.Unmapped();
        if (clientAddress.AddressFamily != serverAddress.AddressFamily)
        {
            throw new ArgumentException(
                $"the client address {clientAddress} and the server address {serverAddress} are of different families", nameof(serverAddress));
        }

        ArgumentOutOfRangeException.ThrowIfNegative(clientPort);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(clientPort, ushort.MaxValue);
        ArgumentOutOfRangeException.ThrowIfNegative(serverPort);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(serverPort, ushort.MaxValue);
        ClientAddress = clientAddress;
        ClientPort = (ushort)clientPort;
        ServerAddress = serverAddress;
        ServerPort = (ushort)serverPort;
    }

    public IPAddress ClientAddress { get; }

    public ushort ClientPort { get; }

    public IPAddress ServerAddress { get; }

    public ushort ServerPort { get; }

    public bool IsIPv6 => ClientAddress.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6;

    public override string ToString() =>
        IsIPv6 ? $"[{ClientAddress}]:{ClientPort} -> [{ServerAddress}]:{ServerPort}" : $"{ClientAddress}:{ClientPort} -> {ServerAddress}:{ServerPort}";
}
