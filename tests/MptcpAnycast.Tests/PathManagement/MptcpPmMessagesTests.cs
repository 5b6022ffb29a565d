using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Interop;
using MptcpAnycast.Netlink;
using MptcpAnycast.PathManagement;
using static MptcpAnycast.Interop.MptcpPmConstants;

namespace MptcpAnycast.Tests.PathManagement;

public sealed class MptcpPmMessagesTests
{
    [Fact]
    public void Announce_is_encoded_byte_for_byte_with_the_port_in_host_order()
    {
        byte[] buffer = new byte[MptcpPmMessages.MaxRequestSize];
        int length = MptcpPmMessages.WriteAnnounce(buffer, familyId: 28, sequence: 0x01020304, token: 0xAABBCCDD, addressId: 5,
            IPAddress.Parse("198.51.100.1"), port: 0x1771);

        byte[] expected =
        [
            72, 0, 0, 0, 28, 0, 5, 0, 4, 3, 2, 1, 0, 0, 0, 0, // nlmsghdr: REQUEST|ACK
            MPTCP_PM_CMD_ANNOUNCE, 1, 0, 0,
            8, 0, 4, 0, 0xDD, 0xCC, 0xBB, 0xAA,              // TOKEN
            44, 0, 1, 0x80,                                  // ADDR, nested
            6, 0, 1, 0, 2, 0, 0, 0,                          // FAMILY AF_INET
            5, 0, 2, 0, 5, 0, 0, 0,                          // ID
            8, 0, 3, 0, 198, 51, 100, 1,                     // ADDR4, network order
            6, 0, 5, 0, 0x71, 0x17, 0, 0,                    // PORT 6001, host (little-endian) order
            8, 0, 6, 0, 1, 0, 0, 0,                          // FLAGS = SIGNAL
        ];
        Assert.Equal(expected, buffer[..length]);
    }

    [Fact]
    public void Announce_without_port_has_no_port_attribute_and_ipv6_and_mapped_addresses_pick_their_family()
    {
        byte[] buffer = new byte[MptcpPmMessages.MaxRequestSize];
        int length = MptcpPmMessages.WriteAnnounce(buffer, 28, 1, 1, 1, IPAddress.Parse("2001:db8::1"), 0);
        Dictionary<ushort, byte[]> addr = AddressNest(buffer.AsSpan(0, length));
        Assert.Equal([10, 0], addr[MPTCP_PM_ADDR_ATTR_FAMILY]);
        Assert.Equal(IPAddress.Parse("2001:db8::1").GetAddressBytes(), addr[MPTCP_PM_ADDR_ATTR_ADDR6]);
        Assert.False(addr.ContainsKey(MPTCP_PM_ADDR_ATTR_PORT));

        length = MptcpPmMessages.WriteAnnounce(buffer, 28, 1, 1, 1, IPAddress.Parse("::ffff:192.0.2.7"), 443);
        addr = AddressNest(buffer.AsSpan(0, length));
        Assert.Equal([2, 0], addr[MPTCP_PM_ADDR_ATTR_FAMILY]);
        Assert.Equal([192, 0, 2, 7], addr[MPTCP_PM_ADDR_ATTR_ADDR4]);
        Assert.Equal([0xBB, 0x01], addr[MPTCP_PM_ADDR_ATTR_PORT]);
    }

    [Fact]
    public void Subflow_backup_request_carries_token_local_with_flags_and_remote()
    {
        byte[] buffer = new byte[MptcpPmMessages.MaxRequestSize];
        int length = MptcpPmMessages.WriteSubflowCommand(buffer, 28, MPTCP_PM_CMD_SET_FLAGS, 1, 0x11223344,
            new IPEndPoint(IPAddress.Parse("192.0.2.1"), 443), null, MPTCP_PM_ADDR_FLAG_BACKUP, new IPEndPoint(IPAddress.Parse("192.0.2.2"), 50000));
        var attributes = Attributes(buffer.AsSpan(0, length));
        Assert.Equal(new byte[] { 0x44, 0x33, 0x22, 0x11 }, attributes[MPTCP_PM_ATTR_TOKEN]);
        Dictionary<ushort, byte[]> local = Nest(attributes[MPTCP_PM_ATTR_ADDR]);
        Dictionary<ushort, byte[]> remote = Nest(attributes[MPTCP_PM_ATTR_ADDR_REMOTE]);
        Assert.Equal([4, 0, 0, 0], local[MPTCP_PM_ADDR_ATTR_FLAGS]);
        Assert.False(local.ContainsKey(MPTCP_PM_ADDR_ATTR_ID));
        Assert.Equal([0x50, 0xC3], remote[MPTCP_PM_ADDR_ATTR_PORT]);
        Assert.False(remote.ContainsKey(MPTCP_PM_ADDR_ATTR_FLAGS));
    }

    [Fact]
    public void Events_decode_every_attribute_with_ports_in_network_order()
    {
        byte[] payload = EventPayload(MPTCP_EVENT_SUB_CLOSED, ipv6: false);
        PathManagerEvent e = MptcpPmMessages.ReadEvent(payload);

        Assert.Equal(PathManagerEventType.SubflowClosed, e.Type);
        Assert.Equal(0xCAFEBABEu, e.Token);
        Assert.Equal(AddressFamily.InterNetwork, e.Family);
        Assert.Equal((byte)1, e.LocalId);
        Assert.Equal((byte)2, e.RemoteId);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("198.51.100.1"), 443), e.Source);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("192.0.2.2"), 50000), e.Destination);
        Assert.True(e.Backup);
        Assert.Equal(104, e.Error);
        Assert.Equal(1, e.Flags);
        Assert.Equal(120u, e.Timeout);
        Assert.Equal(3, e.InterfaceIndex);
        Assert.Equal(3u, e.ResetReason);
        Assert.Equal(1u, e.ResetFlags);
        Assert.True(e.ServerSide);
        Assert.Equal("[SF_CLOSED] token=cafebabe family=inet loc_id=1 rem_id=2 saddr=198.51.100.1 sport=443 daddr=192.0.2.2 dport=50000 "
            + "backup=1 error=104 flags=0x1 timeout=120 if_idx=3 reset_reason=3 reset_flags=0x1 server_side=1", e.ToString());

        PathManagerEvent v6 = MptcpPmMessages.ReadEvent(EventPayload(MPTCP_EVENT_ANNOUNCED, ipv6: true));
        Assert.Equal(PathManagerEventType.Announced, v6.Type);
        Assert.Equal(AddressFamily.InterNetworkV6, v6.Family);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("2001:db8::2"), 50000), v6.Destination);
    }

    [Fact]
    public void Events_keep_unknown_types_skip_unknown_attributes_and_leave_absent_ones_null()
    {
        byte[] buffer = new byte[64];
        var w = new NetlinkWriter(buffer);
        w.WriteGenericHeader(42, 1);
        w.WriteU32(MPTCP_ATTR_TOKEN, 9);
        w.WriteU32(99, 12345);
        PathManagerEvent e = MptcpPmMessages.ReadEvent(buffer.AsSpan(0, w.Length));
        Assert.Equal((PathManagerEventType)42, e.Type);
        Assert.Equal(9u, e.Token);
        Assert.Null(e.Source);
        Assert.Null(e.LocalId);
        Assert.Null(e.ServerSide);
        Assert.Equal(AddressFamily.Unspecified, e.Family);
    }

    [Fact]
    public void Family_reply_yields_the_id_and_the_event_group()
    {
        byte[] payload = FamilyPayload(28, ("mptcp_pm_cmds", 5), ("mptcp_pm_events", 6));
        Assert.Equal(((ushort)28, 6u), MptcpPmMessages.ReadFamily(payload, MPTCP_PM_EV_GRP_NAME));
        Assert.Equal(((ushort)28, 0u), MptcpPmMessages.ReadFamily(FamilyPayload(28), MPTCP_PM_EV_GRP_NAME));
        Assert.Throws<NetlinkFormatException>(() => MptcpPmMessages.ReadFamily(FamilyPayload(0), MPTCP_PM_EV_GRP_NAME));
    }

    [Fact]
    public void Endpoint_and_limits_replies_decode()
    {
        byte[] buffer = new byte[128];
        var w = new NetlinkWriter(buffer);
        w.WriteGenericHeader(MPTCP_PM_CMD_GET_ADDR, 1);
        NestedScope nest = w.BeginNested(MPTCP_PM_ATTR_ADDR);
        w.WriteU16(MPTCP_PM_ADDR_ATTR_FAMILY, 10);
        w.WriteU8(MPTCP_PM_ADDR_ATTR_ID, 7);
        w.WriteBytes(MPTCP_PM_ADDR_ATTR_ADDR6, IPAddress.Parse("2001:db8::10").GetAddressBytes());
        w.WriteU16(MPTCP_PM_ADDR_ATTR_PORT, 4000);
        w.WriteU32(MPTCP_PM_ADDR_ATTR_FLAGS, 6);
        w.WriteI32(MPTCP_PM_ADDR_ATTR_IF_IDX, 4);
        w.EndNested(nest);
        Assert.Equal(new MptcpEndpoint(7, IPAddress.Parse("2001:db8::10"), 4000, MptcpEndpointFlags.Subflow | MptcpEndpointFlags.Backup, 4),
            MptcpPmMessages.ReadEndpoint(buffer.AsSpan(0, w.Length)));

        w = new NetlinkWriter(buffer);
        w.WriteGenericHeader(MPTCP_PM_CMD_GET_LIMITS, 1);
        w.WriteU32(MPTCP_PM_ATTR_RCV_ADD_ADDRS, 1);
        w.WriteU32(MPTCP_PM_ATTR_SUBFLOWS, 2);
        Assert.Equal(new MptcpLimits(2, 1), MptcpPmMessages.ReadLimits(buffer.AsSpan(0, w.Length)));
    }

    [Fact]
    public void Exception_messages_say_what_failed_and_how_to_fix_permissions()
    {
        var invalid = new PathManagerException("ANNOUNCE", 22, "invalid token");
        Assert.Equal("MPTCP path manager ANNOUNCE failed: invalid token (errno 22)", invalid.Message);
        Assert.Equal(22, invalid.Errno);
        Assert.Equal("ANNOUNCE", invalid.Command);

        var denied = new PathManagerException("ADD_ADDR", Errno.EPERM, null);
        Assert.Contains("CAP_NET_ADMIN", denied.Message);
        Assert.Null(denied.KernelMessage);

        var other = new PathManagerException("GET_LIMITS", 16, null);
        Assert.DoesNotContain("CAP_NET_ADMIN", other.Message);
        Assert.Contains("errno 16", other.Message);
    }

    [Theory]
    [InlineData(Errno.EINVAL, PathManagerErrorKind.Refused)]
    [InlineData(Errno.EADDRINUSE, PathManagerErrorKind.Refused)] // a port in use refuses that one command, not the path manager
    [InlineData(Errno.EAGAIN, PathManagerErrorKind.Transient)]
    [InlineData(Errno.EPERM, PathManagerErrorKind.Unavailable)]
    public void Errors_are_sorted_into_retry_give_up_on_the_command_or_unavailable(int errno, PathManagerErrorKind kind) =>
        Assert.Equal(kind, new PathManagerException("ADD_ADDR", errno, null).Kind);

    internal static byte[] EventPayload(byte type, bool ipv6)
    {
        byte[] buffer = new byte[256];
        var w = new NetlinkWriter(buffer);
        w.WriteGenericHeader(type, 1);
        w.WriteU32(MPTCP_ATTR_TOKEN, 0xCAFEBABE);
        w.WriteU16(MPTCP_ATTR_FAMILY, ipv6 ? (ushort)10 : (ushort)2);
        w.WriteU8(MPTCP_ATTR_LOC_ID, 1);
        w.WriteU8(MPTCP_ATTR_REM_ID, 2);
        if (ipv6)
        {
            w.WriteBytes(MPTCP_ATTR_SADDR6, IPAddress.Parse("2001:db8::1").GetAddressBytes());
            w.WriteBytes(MPTCP_ATTR_DADDR6, IPAddress.Parse("2001:db8::2").GetAddressBytes());
        }
        else
        {
            w.WriteBytes(MPTCP_ATTR_SADDR4, [198, 51, 100, 1]);
            w.WriteBytes(MPTCP_ATTR_DADDR4, [192, 0, 2, 2]);
        }

        w.WriteBytes(MPTCP_ATTR_SPORT, [0x01, 0xBB]); // be16 443
        w.WriteBytes(MPTCP_ATTR_DPORT, [0xC3, 0x50]); // be16 50000
        w.WriteU8(MPTCP_ATTR_BACKUP, 1);
        w.WriteU8(MPTCP_ATTR_ERROR, 104);
        w.WriteU16(MPTCP_ATTR_FLAGS, 1);
        w.WriteU32(MPTCP_ATTR_TIMEOUT, 120);
        w.WriteI32(MPTCP_ATTR_IF_IDX, 3);
        w.WriteU32(MPTCP_ATTR_RESET_REASON, 3);
        w.WriteU32(MPTCP_ATTR_RESET_FLAGS, 1);
        w.WriteU8(MPTCP_ATTR_SERVER_SIDE, 1);
        return buffer[..w.Length];
    }

    internal static byte[] FamilyPayload(ushort id, params (string Name, uint Id)[] groups)
    {
        byte[] buffer = new byte[512];
        var w = new NetlinkWriter(buffer);
        w.WriteGenericHeader(1, 2);
        w.WriteString(NetlinkConstants.CTRL_ATTR_FAMILY_NAME, MPTCP_PM_NAME);
        if (id != 0)
        {
            w.WriteU16(NetlinkConstants.CTRL_ATTR_FAMILY_ID, id);
        }

        w.WriteU32(NetlinkConstants.CTRL_ATTR_VERSION, 1);
        if (groups.Length > 0)
        {
            NestedScope list = w.BeginNested(NetlinkConstants.CTRL_ATTR_MCAST_GROUPS);
            for (int i = 0; i < groups.Length; i++)
            {
                NestedScope group = w.BeginNested((ushort)(i + 1));
                w.WriteU32(NetlinkConstants.CTRL_ATTR_MCAST_GRP_ID, groups[i].Id);
                w.WriteString(NetlinkConstants.CTRL_ATTR_MCAST_GRP_NAME, groups[i].Name);
                w.EndNested(group);
            }

            w.EndNested(list);
        }

        return buffer[..w.Length];
    }

    private static Dictionary<ushort, byte[]> Attributes(ReadOnlySpan<byte> message)
    {
        var reader = new NetlinkMessageReader(message);
        Assert.True(reader.TryRead(out NetlinkMessage m));
        return Nest(m.ReadGeneric().Attributes.ToArray());
    }

    private static Dictionary<ushort, byte[]> AddressNest(ReadOnlySpan<byte> message) => Nest(Attributes(message)[MPTCP_PM_ATTR_ADDR]);

    private static Dictionary<ushort, byte[]> Nest(byte[] attributes)
    {
        var result = new Dictionary<ushort, byte[]>();
        var reader = new NetlinkAttributeReader(attributes);
        while (reader.TryRead(out NetlinkAttribute a))
        {
            result[a.Type] = a.Value.ToArray();
        }

        return result;
    }
}
