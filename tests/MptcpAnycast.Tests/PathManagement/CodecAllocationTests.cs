using System.Net;
using MptcpAnycast.PathManagement;
using static MptcpAnycast.Interop.MptcpPmConstants;

namespace MptcpAnycast.Tests.PathManagement;

public sealed class CodecAllocationTests
{
    private const int Iterations = 1000;

    [Fact]
    public void Encoding_an_announce_allocates_nothing()
    {
        byte[] buffer = new byte[MptcpPmMessages.MaxRequestSize];
        IPAddress v4 = IPAddress.Parse("198.51.100.1");
        IPAddress v6 = IPAddress.Parse("2001:db8::1");
        int length = Encode(buffer, v4, v6); // warm up (JIT, statics)

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < Iterations; i++)
        {
            length += Encode(buffer, v4, v6);
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
        Assert.True(length > 0);
    }

    [Fact]
    public void Decoding_an_event_allocates_only_the_event_and_its_addresses()
    {
        byte[] v4 = MptcpPmMessagesTests.EventPayload(MPTCP_EVENT_SUB_ESTABLISHED, ipv6: false);
        byte[] v6 = MptcpPmMessagesTests.EventPayload(MPTCP_EVENT_SUB_ESTABLISHED, ipv6: true);
        foreach (byte[] payload in new[] { v4, v6 })
        {
            PathManagerEvent warm = MptcpPmMessages.ReadEvent(payload);
            long resultSize = Measure(() => Rebuild(warm));
            long decodeSize = Measure(() => MptcpPmMessages.ReadEvent(payload));
            Assert.True(resultSize > 0);
            Assert.Equal(resultSize, decodeSize);
        }
    }

    private static int Encode(byte[] buffer, IPAddress v4, IPAddress v6) =>
        MptcpPmMessages.WriteAnnounce(buffer, 28, 1, 0xAABBCCDD, 1, v4, 6001) + MptcpPmMessages.WriteAnnounce(buffer, 28, 2, 0xAABBCCDD, 2, v6, 0);

    /// <summary>Bytes allocated by one call (the average of many, after a warm-up).</summary>
    private static long Measure(Func<PathManagerEvent> action)
    {
        GC.KeepAlive(action());
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < Iterations; i++)
        {
            GC.KeepAlive(action());
        }

        return (GC.GetAllocatedBytesForCurrentThread() - before) / Iterations;
    }

    /// <summary>The same result built by hand: exactly the objects a decoded event must consist of.</summary>
    private static PathManagerEvent Rebuild(PathManagerEvent e) => new()
    {
        Type = e.Type,
        Token = e.Token,
        Family = e.Family,
        LocalId = e.LocalId,
        RemoteId = e.RemoteId,
        Source = new IPEndPoint(Copy(e.Source!.Address), e.Source.Port),
        Destination = new IPEndPoint(Copy(e.Destination!.Address), e.Destination.Port),
        Backup = e.Backup,
        Error = e.Error,
        Flags = e.Flags,
        Timeout = e.Timeout,
        InterfaceIndex = e.InterfaceIndex,
        ResetReason = e.ResetReason,
        ResetFlags = e.ResetFlags,
        ServerSide = e.ServerSide,
    };

    private static IPAddress Copy(IPAddress address)
    {
        Span<byte> bytes = stackalloc byte[16];
        Assert.True(address.TryWriteBytes(bytes, out int written));
        return new IPAddress(bytes[..written]);
    }
}
