using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using MptcpAnycast.Rescue;
using MptcpAnycast.Rescue.Peers;

namespace MptcpAnycast.Tests.Rescue.Peers;

/// <summary>Names, keys, addresses and flows the peer-protocol tests share, and a free-port finder for loopback.</summary>
internal static class PeerKit
{
    public static readonly IPAddress A4 = IPAddress.Parse("127.0.0.1");
    public static readonly IPAddress B4 = IPAddress.Parse("127.0.0.2");
    public static readonly IPAddress C4 = IPAddress.Parse("127.0.0.3");
    public static readonly IPAddress Stranger4 = IPAddress.Parse("127.0.0.9");

    public static readonly TcpFlow Flow4 = new(IPAddress.Parse("198.51.100.7"), 40001, IPAddress.Parse("192.0.2.1"), 443);
    public static readonly TcpFlow Flow6 = new(IPAddress.Parse("2001:db8:0:7::42"), 51234, IPAddress.Parse("2001:db8:ffff::1"), 8443);

    /// <summary>The key two POPs share: derived from their names, so every test spells it the same way.</summary>
    public static byte[] Key(string one, string other)
    {
        string pair = string.CompareOrdinal(one, other) < 0 ? $"{one}|{other}" : $"{other}|{one}";
        return SHA256.HashData(Encoding.ASCII.GetBytes(pair));
    }

    public static RescuePeer Peer(string self, string name, IPAddress? v4, IPAddress? v6 = null) => new(name, v4, v6, Key(self, name));

    /// <summary>Options for POP <paramref name="self"/> at <paramref name="v4"/>/<paramref name="v6"/> knowing <paramref name="peers"/> (name, v4, v6).</summary>
    public static PeerChannelOptions Options(string self, IPAddress? v4, IPAddress? v6, int port, params (string Name, IPAddress? V4, IPAddress? V6)[] peers) =>
        new()
        {
            LocalName = self,
            LocalIPv4 = v4,
            LocalIPv6 = v6,
            Port = port,
            Peers = [.. peers.Select(p => Peer(self, p.Name, p.V4, p.V6))],
        };

    /// <summary>A directory as POP "pop-a" at 127.0.0.1 keeps it, with peers "pop-b" (127.0.0.2, ::1) and "pop-c" (127.0.0.3).</summary>
    public static PeerDirectory DirectoryOfA(TimeProvider? time = null) =>
        new(Options("pop-a", A4, null, 1, ("pop-b", B4, IPAddress.IPv6Loopback), ("pop-c", C4, null)), time ?? TimeProvider.System);

    /// <summary>POP "pop-b" as a sender towards "pop-a": its state for "pop-a" numbers and signs what it sends.</summary>
    public static PeerDirectory DirectoryOfB(TimeProvider? time = null) =>
        new(Options("pop-b", B4, null, 1, ("pop-a", A4, null)), time ?? TimeProvider.System);

    /// <summary>A message from <paramref name="sender"/>'s point of view to its peer <paramref name="to"/>, with the next sequence number.</summary>
    public static byte[] Encode(PeerDirectory sender, string to, PeerMessageType type, TcpFlow flow, uint queryId = 7, PeerVerdict? verdict = null, ulong? sequence = null)
    {
        Assert.True(sender.TryGet(to, out PeerState? peer));
        var message = new PeerMessage(
            type,
            sequence ?? peer.NextSequence(),
            queryId,
            WireFlow.From(flow),
            verdict ?? (type == PeerMessageType.Query ? PeerVerdict.None : PeerVerdict.Owned));
        byte[] buffer = new byte[PeerMessageCodec.MaxLength];
        int length = PeerMessageCodec.Encode(buffer, sender.LocalNameBytes, message, peer.Key);
        return buffer[..length];
    }

    /// <summary>Replaces the MAC of <paramref name="datagram"/> by the right one under <paramref name="key"/>, after a crafted change.</summary>
    public static byte[] Resign(byte[] datagram, byte[] key)
    {
        byte[] mac = HMACSHA256.HashData(key, datagram.AsSpan(0, datagram.Length - PeerMessageCodec.MacLength));
        byte[] signed = (byte[])datagram.Clone();
        mac.AsSpan(0, PeerMessageCodec.MacLength).CopyTo(signed.AsSpan(signed.Length - PeerMessageCodec.MacLength));
        return signed;
    }

    /// <summary>
    /// A UDP port free on every one of <paramref name="addresses"/> (just now: good enough on a test machine), drawn
    /// below the kernel's ephemeral range: a test that binds the port again later (a restarted POP) must not find it
    /// given meanwhile to another test's socket bound to port 0.
    /// </summary>
    public static int FreePort(params IPAddress[] addresses)
    {
        for (int attempt = 0; attempt < 100; attempt++)
        {
            var sockets = new List<Socket>();
            int port = Random.Shared.Next(21000, 32000);
            try
            {
                foreach (IPAddress other in addresses)
                {
                    var socket = new Socket(other.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
                    sockets.Add(socket);
                    socket.Bind(new IPEndPoint(other, port));
                }

                return port;
            }
            catch (SocketException)
            {
                // taken on one of the others: try another
            }
            finally
            {
                sockets.ForEach(s => s.Dispose());
            }
        }

        throw new InvalidOperationException("no UDP port free on all of " + string.Join(", ", (object[])addresses));
    }

    /// <summary>A plain UDP socket at <paramref name="address"/> (port chosen by the kernel), to play a peer or an attacker.</summary>
    public static Socket RawSocket(IPAddress address, int port = 0)
    {
        var socket = new Socket(address.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(address, port));
        return socket;
    }
}
