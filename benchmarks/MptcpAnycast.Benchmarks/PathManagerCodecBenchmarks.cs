using System.Net;
using BenchmarkDotNet.Attributes;
using MptcpAnycast.Netlink;
using MptcpAnycast.PathManagement;
using static MptcpAnycast.Interop.MptcpPmConstants;

namespace MptcpAnycast.Benchmarks;

/// <summary>The path-manager codec: building an ANNOUNCE request (must allocate nothing) and decoding an event.</summary>
[MemoryDiagnoser]
public class PathManagerCodecBenchmarks
{
    private readonly byte[] _request = new byte[MptcpPmMessages.MaxRequestSize];
    private readonly IPAddress _unicast = IPAddress.Parse("198.51.100.1");
    private readonly IPAddress _unicast6 = IPAddress.Parse("2001:db8::1");
    private byte[] _event = [];

    [GlobalSetup]
    public void Setup()
    {
        _event = SubflowEstablishedEvent();

        // Check the answers before timing them.
        int length = AnnounceEncode_IPv4();
        var reader = new NetlinkMessageReader(_request.AsSpan(0, length));
        if (length != 72 || !reader.TryRead(out NetlinkMessage message) || message.ReadGeneric().Command != MPTCP_PM_CMD_ANNOUNCE)
        {
            throw new InvalidOperationException($"unexpected ANNOUNCE encoding ({length} bytes)");
        }

        PathManagerEvent e = EventDecode();
        if (e.Type != PathManagerEventType.SubflowEstablished || e.Token != 0xCAFEBABE
            || !new IPEndPoint(_unicast, 443).Equals(e.Source) || e.Destination?.Port != 50000 || e.ServerSide != true)
        {
            throw new InvalidOperationException($"unexpected event decoding: {e}");
        }
    }

    [Benchmark]
    public int AnnounceEncode_IPv4() => MptcpPmMessages.WriteAnnounce(_request, 28, 1, 0xCAFEBABE, 1, _unicast, 443);

    [Benchmark]
    public int AnnounceEncode_IPv6() => MptcpPmMessages.WriteAnnounce(_request, 28, 1, 0xCAFEBABE, 1, _unicast6, 0);

    [Benchmark]
    public PathManagerEvent EventDecode() => MptcpPmMessages.ReadEvent(_event);

    private static byte[] SubflowEstablishedEvent()
    {
        byte[] buffer = new byte[256];
        var w = new NetlinkWriter(buffer);
        w.WriteGenericHeader(MPTCP_EVENT_SUB_ESTABLISHED, 1);
        w.WriteU32(MPTCP_ATTR_TOKEN, 0xCAFEBABE);
        w.WriteU16(MPTCP_ATTR_FAMILY, 2);
        w.WriteU8(MPTCP_ATTR_LOC_ID, 1);
        w.WriteU8(MPTCP_ATTR_REM_ID, 0);
        w.WriteBytes(MPTCP_ATTR_SADDR4, [198, 51, 100, 1]);
        w.WriteBytes(MPTCP_ATTR_DADDR4, [192, 0, 2, 2]);
        w.WriteBytes(MPTCP_ATTR_SPORT, [0x01, 0xBB]);
        w.WriteBytes(MPTCP_ATTR_DPORT, [0xC3, 0x50]);
        w.WriteU8(MPTCP_ATTR_BACKUP, 0);
        w.WriteI32(MPTCP_ATTR_IF_IDX, 2);
        w.WriteU8(MPTCP_ATTR_SERVER_SIDE, 1);
        return buffer[..w.Length];
    }
}
