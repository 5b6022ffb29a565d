using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Interop;
using MptcpAnycast.Netlink;
using static MptcpAnycast.Interop.MptcpPmConstants;

namespace MptcpAnycast.PathManagement;

/// <summary>
/// Encodes <c>mptcp_pm</c> requests and decodes its replies and events. Encoding writes into the caller's buffer and
/// allocates nothing; decoding allocates only its result. Malformed input raises <see cref="NetlinkFormatException"/>.
/// </summary>
internal static class MptcpPmMessages
{
    /// <summary>Large enough for any request this client sends: what the command channel has room for.</summary>
    public const int MaxRequestSize = NetlinkCommandChannel.MaxRequestSize;

    public static int WriteGetFamily(Span<byte> buffer, uint sequence, string familyName)
    {
        var w = new NetlinkWriter(buffer);
        w.BeginMessage(NetlinkConstants.GENL_ID_CTRL, NetlinkConstants.NLM_F_REQUEST | NetlinkConstants.NLM_F_ACK, sequence);
        w.WriteGenericHeader(NetlinkConstants.CTRL_CMD_GETFAMILY, 1);
        w.WriteString(NetlinkConstants.CTRL_ATTR_FAMILY_NAME, familyName);
        w.EndMessage();
        return w.Length;
    }

    /// <summary>ANNOUNCE {TOKEN, ADDR{FAMILY, ID, ADDR4|ADDR6, [PORT], FLAGS=SIGNAL}}.</summary>
    public static int WriteAnnounce(Span<byte> buffer, ushort familyId, uint sequence, uint token, byte addressId, IPAddress address, int port)
    {
        var w = Begin(buffer, familyId, MPTCP_PM_CMD_ANNOUNCE, sequence);
        w.WriteU32(MPTCP_PM_ATTR_TOKEN, token);
        WriteAddress(ref w, MPTCP_PM_ATTR_ADDR, address, port, addressId, MPTCP_PM_ADDR_FLAG_SIGNAL, 0);
        w.EndMessage();
        return w.Length;
    }

    /// <summary>REMOVE {TOKEN, LOC_ID}.</summary>
    public static int WriteRemove(Span<byte> buffer, ushort familyId, uint sequence, uint token, byte addressId)
    {
        var w = Begin(buffer, familyId, MPTCP_PM_CMD_REMOVE, sequence);
        w.WriteU32(MPTCP_PM_ATTR_TOKEN, token);
        w.WriteU8(MPTCP_PM_ATTR_LOC_ID, addressId);
        w.EndMessage();
        return w.Length;
    }

    /// <summary>
    /// SUBFLOW_CREATE, SUBFLOW_DESTROY and the userspace SET_FLAGS: {TOKEN, ADDR{local, [ID], [FLAGS]}, ADDR_REMOTE{remote}}.
    /// </summary>
    public static int WriteSubflowCommand(Span<byte> buffer, ushort familyId, byte command, uint sequence, uint token,
        IPEndPoint local, byte? localId, uint? localFlags, IPEndPoint remote)
    {
        var w = Begin(buffer, familyId, command, sequence);
        w.WriteU32(MPTCP_PM_ATTR_TOKEN, token);
        WriteAddress(ref w, MPTCP_PM_ATTR_ADDR, local.Address, local.Port, localId, localFlags, 0);
        WriteAddress(ref w, MPTCP_PM_ATTR_ADDR_REMOTE, remote.Address, remote.Port, null, null, 0);
        w.EndMessage();
        return w.Length;
    }

    /// <summary>ADD_ADDR {ADDR{FAMILY, [ID], ADDR, [PORT], FLAGS, [IF_IDX]}}.</summary>
    public static int WriteAddEndpoint(Span<byte> buffer, ushort familyId, uint sequence, MptcpEndpoint endpoint)
    {
        var w = Begin(buffer, familyId, MPTCP_PM_CMD_ADD_ADDR, sequence);
        WriteAddress(ref w, MPTCP_PM_ATTR_ADDR, endpoint.Address, endpoint.Port, endpoint.Id == 0 ? null : endpoint.Id,
            (uint)endpoint.Flags, endpoint.InterfaceIndex);
        w.EndMessage();
        return w.Length;
    }

    /// <summary>DEL_ADDR, GET_ADDR (one) and the in-kernel SET_FLAGS: {ADDR{ID, [FLAGS]}}.</summary>
    public static int WriteEndpointById(Span<byte> buffer, ushort familyId, byte command, uint sequence, byte id, uint? flags)
    {
        var w = Begin(buffer, familyId, command, sequence);
        NestedScope addr = w.BeginNested(MPTCP_PM_ATTR_ADDR);
        w.WriteU8(MPTCP_PM_ADDR_ATTR_ID, id);
        if (flags is uint f)
        {
            w.WriteU32(MPTCP_PM_ADDR_ATTR_FLAGS, f);
        }

        w.EndNested(addr);
        w.EndMessage();
        return w.Length;
    }

    /// <summary>A request without attributes: GET_ADDR dump, FLUSH_ADDRS, GET_LIMITS.</summary>
    public static int WriteBare(Span<byte> buffer, ushort familyId, byte command, uint sequence, bool dump)
    {
        var w = new NetlinkWriter(buffer);
        w.BeginMessage(familyId, dump
            ? (ushort)(NetlinkConstants.NLM_F_REQUEST | NetlinkConstants.NLM_F_DUMP)
            : (ushort)(NetlinkConstants.NLM_F_REQUEST | NetlinkConstants.NLM_F_ACK), sequence);
        w.WriteGenericHeader(command, MPTCP_PM_VER);
        w.EndMessage();
        return w.Length;
    }

    /// <summary>SET_LIMITS {RCV_ADD_ADDRS, SUBFLOWS}.</summary>
    public static int WriteSetLimits(Span<byte> buffer, ushort familyId, uint sequence, MptcpLimits limits)
    {
        var w = Begin(buffer, familyId, MPTCP_PM_CMD_SET_LIMITS, sequence);
        w.WriteU32(MPTCP_PM_ATTR_RCV_ADD_ADDRS, limits.AddAddrAccepted);
        w.WriteU32(MPTCP_PM_ATTR_SUBFLOWS, limits.Subflows);
        w.EndMessage();
        return w.Length;
    }

    /// <summary>Reads a CTRL_CMD_NEWFAMILY reply: the family id and the id of one multicast group (0 when absent).</summary>
    public static (ushort FamilyId, uint GroupId) ReadFamily(ReadOnlySpan<byte> genericPayload, string groupName)
    {
        GenericMessage message = new NetlinkMessage(0, 0, 0, 0, genericPayload).ReadGeneric();
        ushort familyId = 0;
        uint groupId = 0;
        var attributes = new NetlinkAttributeReader(message.Attributes);
        while (attributes.TryRead(out NetlinkAttribute attribute))
        {
            if (attribute.Type == NetlinkConstants.CTRL_ATTR_FAMILY_ID)
            {
                familyId = attribute.GetU16();
            }
            else if (attribute.Type == NetlinkConstants.CTRL_ATTR_MCAST_GROUPS)
            {
                var groups = attribute.GetNested();
                while (groups.TryRead(out NetlinkAttribute group))
                {
                    bool named = false;
                    uint id = 0;
                    var fields = group.GetNested();
                    while (fields.TryRead(out NetlinkAttribute field))
                    {
                        if (field.Type == NetlinkConstants.CTRL_ATTR_MCAST_GRP_NAME)
                        {
                            named = field.ValueEquals(groupName);
                        }
                        else if (field.Type == NetlinkConstants.CTRL_ATTR_MCAST_GRP_ID)
                        {
                            id = field.GetU32();
                        }
                    }

                    if (named)
                    {
                        groupId = id;
                    }
                }
            }
        }

        if (familyId == 0)
        {
            throw new NetlinkFormatException("CTRL_CMD_NEWFAMILY reply without CTRL_ATTR_FAMILY_ID");
        }

        return (familyId, groupId);
    }

    /// <summary>Reads a GET_ADDR reply: {ADDR{FAMILY, ID, ADDR4|ADDR6, [PORT], FLAGS, [IF_IDX]}}.</summary>
    public static MptcpEndpoint ReadEndpoint(ReadOnlySpan<byte> genericPayload)
    {
        GenericMessage message = new NetlinkMessage(0, 0, 0, 0, genericPayload).ReadGeneric();
        var attributes = new NetlinkAttributeReader(message.Attributes);
        while (attributes.TryRead(out NetlinkAttribute attribute))
        {
            if (attribute.Type != MPTCP_PM_ATTR_ADDR)
            {
                continue;
            }

            byte id = 0;
            IPAddress? address = null;
            int port = 0, ifindex = 0;
            uint flags = 0;
            var fields = attribute.GetNested();
            while (fields.TryRead(out NetlinkAttribute field))
            {
                switch (field.Type)
                {
                    case MPTCP_PM_ADDR_ATTR_ID: id = field.GetU8(); break;
                    case MPTCP_PM_ADDR_ATTR_ADDR4: address = field.GetIPv4(); break;
                    case MPTCP_PM_ADDR_ATTR_ADDR6: address = field.GetIPv6(); break;
                    case MPTCP_PM_ADDR_ATTR_PORT: port = field.GetU16(); break; // host byte order in this nest
                    case MPTCP_PM_ADDR_ATTR_FLAGS: flags = field.GetU32(); break;
                    case MPTCP_PM_ADDR_ATTR_IF_IDX: ifindex = field.GetI32(); break;
                }
            }

            return new MptcpEndpoint(id, address ?? throw new NetlinkFormatException("endpoint without an address"), port, (MptcpEndpointFlags)flags, ifindex);
        }

        throw new NetlinkFormatException("GET_ADDR reply without MPTCP_PM_ATTR_ADDR");
    }

    /// <summary>Reads a GET_LIMITS reply. A missing attribute reads as 0.</summary>
    public static MptcpLimits ReadLimits(ReadOnlySpan<byte> genericPayload)
    {
        GenericMessage message = new NetlinkMessage(0, 0, 0, 0, genericPayload).ReadGeneric();
        uint subflows = 0, accepted = 0;
        var attributes = new NetlinkAttributeReader(message.Attributes);
        while (attributes.TryRead(out NetlinkAttribute attribute))
        {
            if (attribute.Type == MPTCP_PM_ATTR_SUBFLOWS)
            {
                subflows = attribute.GetU32();
            }
            else if (attribute.Type == MPTCP_PM_ATTR_RCV_ADD_ADDRS)
            {
                accepted = attribute.GetU32();
            }
        }

        return new MptcpLimits(subflows, accepted);
    }

    /// <summary>
    /// Decodes an event (the generic payload of a message on <c>mptcp_pm_events</c>). Unknown attributes are skipped;
    /// integers are read by their actual width. Allocates only the event and its addresses.
    /// </summary>
    public static PathManagerEvent ReadEvent(ReadOnlySpan<byte> genericPayload)
    {
        GenericMessage message = new NetlinkMessage(0, 0, 0, 0, genericPayload).ReadGeneric();
        uint token = 0;
        ushort family = 0;
        byte? localId = null, remoteId = null;
        bool? backup = null, serverSide = null;
        int? error = null, flags = null, ifindex = null;
        uint? timeout = null, resetReason = null, resetFlags = null;
        ReadOnlySpan<byte> saddr = default, daddr = default;
        int sport = 0, dport = 0;
        var attributes = new NetlinkAttributeReader(message.Attributes);
        while (attributes.TryRead(out NetlinkAttribute a))
        {
            switch (a.Type)
            {
                case MPTCP_ATTR_TOKEN: token = a.GetU32(); break;
                case MPTCP_ATTR_FAMILY: family = a.GetU16(); break;
                case MPTCP_ATTR_LOC_ID: localId = a.GetU8(); break;
                case MPTCP_ATTR_REM_ID: remoteId = a.GetU8(); break;
                case MPTCP_ATTR_SADDR4: saddr = Exactly(a, 4); break;
                case MPTCP_ATTR_SADDR6: saddr = Exactly(a, 16); break;
                case MPTCP_ATTR_DADDR4: daddr = Exactly(a, 4); break;
                case MPTCP_ATTR_DADDR6: daddr = Exactly(a, 16); break;
                case MPTCP_ATTR_SPORT: sport = a.GetU16BigEndian(); break;
                case MPTCP_ATTR_DPORT: dport = a.GetU16BigEndian(); break;
                case MPTCP_ATTR_BACKUP: backup = a.GetU8() != 0; break;
                case MPTCP_ATTR_ERROR: error = (int)a.GetUnsigned(); break;
                case MPTCP_ATTR_FLAGS: flags = (int)a.GetUnsigned(); break;
                case MPTCP_ATTR_TIMEOUT: timeout = a.GetUnsigned(); break;
                case MPTCP_ATTR_IF_IDX: ifindex = a.GetI32(); break;
                case MPTCP_ATTR_RESET_REASON: resetReason = a.GetUnsigned(); break;
                case MPTCP_ATTR_RESET_FLAGS: resetFlags = a.GetUnsigned(); break;
                case MPTCP_ATTR_SERVER_SIDE: serverSide = a.GetU8() != 0; break;
            }
        }

        return new PathManagerEvent
        {
            Type = (PathManagerEventType)message.Command,
            Token = token,
            Family = family switch
            {
                MptcpConstants.AF_INET => AddressFamily.InterNetwork,
                MptcpConstants.AF_INET6 => AddressFamily.InterNetworkV6,
                0 => AddressFamily.Unspecified,
                _ => AddressFamily.Unknown,
            },
            LocalId = localId,
            RemoteId = remoteId,
            Source = saddr.IsEmpty ? null : new IPEndPoint(new IPAddress(saddr), sport),
            Destination = daddr.IsEmpty ? null : new IPEndPoint(new IPAddress(daddr), dport),
            Backup = backup,
            Error = error,
            Flags = flags,
            Timeout = timeout,
            InterfaceIndex = ifindex,
            ResetReason = resetReason,
            ResetFlags = resetFlags,
            ServerSide = serverSide,
        };
    }

    private static ReadOnlySpan<byte> Exactly(NetlinkAttribute attribute, int size) => attribute.Value.Length >= size
        ? attribute.Value[..size]
        : throw new NetlinkFormatException($"address attribute {attribute.Type} has {attribute.Value.Length} bytes, needs {size}");

    private static NetlinkWriter Begin(Span<byte> buffer, ushort familyId, byte command, uint sequence)
    {
        var w = new NetlinkWriter(buffer);
        w.BeginMessage(familyId, NetlinkConstants.NLM_F_REQUEST | NetlinkConstants.NLM_F_ACK, sequence);
        w.WriteGenericHeader(command, MPTCP_PM_VER);
        return w;
    }

    /// <summary>
    /// Writes an address nest. The port goes in host byte order (the kernel reads <c>MPTCP_PM_ADDR_ATTR_PORT</c> with
    /// <c>nla_get_u16</c> and converts it with <c>htons</c>); port 0 writes no port attribute.
    /// </summary>
    private static void WriteAddress(ref NetlinkWriter w, ushort nestType, IPAddress address, int port, byte? id, uint? flags, int ifindex)
    {
        ArgumentNullException.ThrowIfNull(address);
        ArgumentOutOfRangeException.ThrowIfNegative(port);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(port, ushort.MaxValue);
        NestedScope nest = w.BeginNested(nestType);
        w.WriteU16(MPTCP_PM_ADDR_ATTR_FAMILY, NetlinkWriter.FamilyOf(address));
        if (id is byte addressId)
        {
            w.WriteU8(MPTCP_PM_ADDR_ATTR_ID, addressId);
        }

        w.WriteAddress(MPTCP_PM_ADDR_ATTR_ADDR4, MPTCP_PM_ADDR_ATTR_ADDR6, address);
        if (port != 0)
        {
            w.WriteU16(MPTCP_PM_ADDR_ATTR_PORT, (ushort)port);
        }

        if (flags is uint f)
        {
            w.WriteU32(MPTCP_PM_ADDR_ATTR_FLAGS, f);
        }

        if (ifindex != 0)
        {
            w.WriteI32(MPTCP_PM_ADDR_ATTR_IF_IDX, ifindex);
        }

        w.EndNested(nest);
    }
}
