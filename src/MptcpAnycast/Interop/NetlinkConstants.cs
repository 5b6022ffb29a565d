namespace MptcpAnycast.Interop;

// Values mirror Linux uapi headers linux/netlink.h, linux/genetlink.h, linux/mptcp.h, linux/sock_diag.h,
// linux/inet_diag.h and the TCP states of include/net/tcp_states.h, which linux/bpf.h repeats as BPF_TCP_*
// (SPDX: GPL-2.0 WITH Linux-syscall-note). C names so they can be grepped for in the kernel.
#pragma warning disable IDE1006 // C names

/// <summary>Netlink and generic-netlink constants (<c>linux/netlink.h</c>, <c>linux/genetlink.h</c>).</summary>
internal static class NetlinkConstants
{
    public const int AF_NETLINK = 16;
    public const int NETLINK_GENERIC = 16;
    public const int NETLINK_SOCK_DIAG = 4;
    public const int SOL_NETLINK = 270;

    // setsockopt(SOL_NETLINK, ...)
    public const int NETLINK_ADD_MEMBERSHIP = 1;
    public const int NETLINK_DROP_MEMBERSHIP = 2;
    public const int NETLINK_CAP_ACK = 10;
    public const int NETLINK_EXT_ACK = 11;

    public const int SO_RCVBUF = 8;
    public const int SO_RCVBUFFORCE = 33;
    public const int SO_RCVTIMEO = 20;

    // struct nlmsghdr { __u32 nlmsg_len; __u16 nlmsg_type; __u16 nlmsg_flags; __u32 nlmsg_seq; __u32 nlmsg_pid; }
    public const int NLMSG_ALIGNTO = 4;
    public const int NLMSG_HDRLEN = 16;

    // struct nlattr { __u16 nla_len; __u16 nla_type; }
    public const int NLA_ALIGNTO = 4;
    public const int NLA_HDRLEN = 4;
    public const ushort NLA_F_NESTED = 1 << 15;
    public const ushort NLA_F_NET_BYTEORDER = 1 << 14;
    public const ushort NLA_TYPE_MASK = unchecked((ushort)~(NLA_F_NESTED | NLA_F_NET_BYTEORDER));

    // struct genlmsghdr { __u8 cmd; __u8 version; __u16 reserved; }
    public const int GENL_HDRLEN = 4;

    public const ushort NLMSG_NOOP = 0x1;
    public const ushort NLMSG_ERROR = 0x2;
    public const ushort NLMSG_DONE = 0x3;
    public const ushort NLMSG_OVERRUN = 0x4;
    public const ushort NLMSG_MIN_TYPE = 0x10;

    public const ushort NLM_F_REQUEST = 0x01;
    public const ushort NLM_F_MULTI = 0x02;
    public const ushort NLM_F_ACK = 0x04;
    public const ushort NLM_F_ECHO = 0x08;
    public const ushort NLM_F_DUMP_INTR = 0x10;
    public const ushort NLM_F_ROOT = 0x100;
    public const ushort NLM_F_MATCH = 0x200;
    public const ushort NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH;

    // Flags of an NLMSG_ERROR message.
    public const ushort NLM_F_CAPPED = 0x100;
    public const ushort NLM_F_ACK_TLVS = 0x200;

    // Extended ack attributes after struct nlmsgerr.
    public const ushort NLMSGERR_ATTR_MSG = 1;
    public const ushort NLMSGERR_ATTR_OFFS = 2;

    public const ushort GENL_ID_CTRL = NLMSG_MIN_TYPE;
    public const byte CTRL_CMD_GETFAMILY = 3;
    public const ushort CTRL_ATTR_FAMILY_ID = 1;
    public const ushort CTRL_ATTR_FAMILY_NAME = 2;
    public const ushort CTRL_ATTR_VERSION = 3;
    public const ushort CTRL_ATTR_MCAST_GROUPS = 7;
    public const ushort CTRL_ATTR_MCAST_GRP_NAME = 1;
    public const ushort CTRL_ATTR_MCAST_GRP_ID = 2;
}

/// <summary>The socket-table queries of <c>NETLINK_SOCK_DIAG</c> (<c>linux/sock_diag.h</c>, <c>linux/inet_diag.h</c>).</summary>
internal static class SockDiagConstants
{
    public const ushort SOCK_DIAG_BY_FAMILY = 20;

    // Both halves of idiag_cookie set: the kernel skips its check that the socket is the one a dump reported.
    public const uint INET_DIAG_NOCOOKIE = ~0U;
}

/// <summary>Byte offsets in <c>struct inet_diag_sockid</c>: ports and addresses in network byte order.</summary>
internal static class InetDiagSockIdLayout
{
    public const int idiag_sport = 0;
    public const int idiag_dport = 2;
    public const int idiag_src = 4;  // __be32[4]: an IPv4 address in the first word
    public const int idiag_dst = 20;
    public const int idiag_if = 36;
    public const int idiag_cookie = 40; // __u32[2]
    public const int Size = 48;
}

/// <summary>Byte offsets in <c>struct inet_diag_req_v2</c>, the request of <c>SOCK_DIAG_BY_FAMILY</c>.</summary>
internal static class InetDiagReqV2Layout
{
    public const int sdiag_family = 0;
    public const int sdiag_protocol = 1;
    public const int idiag_ext = 2;
    public const int idiag_states = 4;
    public const int id = 8;
    public const int Size = 56;
}

/// <summary>Byte offsets in <c>struct inet_diag_msg</c>, one socket in the answer (attributes follow it).</summary>
internal static class InetDiagMsgLayout
{
    public const int idiag_family = 0;
    public const int idiag_state = 1;
    public const int idiag_timer = 2;
    public const int idiag_retrans = 3;
    public const int id = 4;
    public const int idiag_expires = 52;
    public const int idiag_rqueue = 56;
    public const int idiag_wqueue = 60;
    public const int idiag_uid = 64;
    public const int idiag_inode = 68;
    public const int Size = 72;
}

/// <summary>The kernel's TCP states, as <c>idiag_state</c> reports them (<c>include/net/tcp_states.h</c>).</summary>
internal static class TcpStates
{
    public const byte TCP_ESTABLISHED = 1;
    public const byte TCP_SYN_SENT = 2;
    public const byte TCP_SYN_RECV = 3;
    public const byte TCP_FIN_WAIT1 = 4;
    public const byte TCP_FIN_WAIT2 = 5;
    public const byte TCP_TIME_WAIT = 6;
    public const byte TCP_CLOSE = 7;
    public const byte TCP_CLOSE_WAIT = 8;
    public const byte TCP_LAST_ACK = 9;
    public const byte TCP_LISTEN = 10;
    public const byte TCP_CLOSING = 11;
    public const byte TCP_NEW_SYN_RECV = 12;
    public const byte TCP_BOUND_INACTIVE = 13;
}

/// <summary>The <c>mptcp_pm</c> generic-netlink family (<c>linux/mptcp.h</c>, <c>linux/mptcp_pm.h</c>).</summary>
internal static class MptcpPmConstants
{
    public const string MPTCP_PM_NAME = "mptcp_pm";
    public const string MPTCP_PM_CMD_GRP_NAME = "mptcp_pm_cmds";
    public const string MPTCP_PM_EV_GRP_NAME = "mptcp_pm_events";
    public const byte MPTCP_PM_VER = 1;

    public const byte MPTCP_PM_CMD_ADD_ADDR = 1;
    public const byte MPTCP_PM_CMD_DEL_ADDR = 2;
    public const byte MPTCP_PM_CMD_GET_ADDR = 3;
    public const byte MPTCP_PM_CMD_FLUSH_ADDRS = 4;
    public const byte MPTCP_PM_CMD_SET_LIMITS = 5;
    public const byte MPTCP_PM_CMD_GET_LIMITS = 6;
    public const byte MPTCP_PM_CMD_SET_FLAGS = 7;
    public const byte MPTCP_PM_CMD_ANNOUNCE = 8;
    public const byte MPTCP_PM_CMD_REMOVE = 9;
    public const byte MPTCP_PM_CMD_SUBFLOW_CREATE = 10;
    public const byte MPTCP_PM_CMD_SUBFLOW_DESTROY = 11;

    public const ushort MPTCP_PM_ATTR_ADDR = 1;
    public const ushort MPTCP_PM_ATTR_RCV_ADD_ADDRS = 2;
    public const ushort MPTCP_PM_ATTR_SUBFLOWS = 3;
    public const ushort MPTCP_PM_ATTR_TOKEN = 4;
    public const ushort MPTCP_PM_ATTR_LOC_ID = 5;
    public const ushort MPTCP_PM_ATTR_ADDR_REMOTE = 6;

    public const ushort MPTCP_PM_ADDR_ATTR_FAMILY = 1;
    public const ushort MPTCP_PM_ADDR_ATTR_ID = 2;
    public const ushort MPTCP_PM_ADDR_ATTR_ADDR4 = 3;
    public const ushort MPTCP_PM_ADDR_ATTR_ADDR6 = 4;
    public const ushort MPTCP_PM_ADDR_ATTR_PORT = 5;
    public const ushort MPTCP_PM_ADDR_ATTR_FLAGS = 6;
    public const ushort MPTCP_PM_ADDR_ATTR_IF_IDX = 7;

    public const uint MPTCP_PM_ADDR_FLAG_SIGNAL = 1 << 0;
    public const uint MPTCP_PM_ADDR_FLAG_SUBFLOW = 1 << 1;
    public const uint MPTCP_PM_ADDR_FLAG_BACKUP = 1 << 2;
    public const uint MPTCP_PM_ADDR_FLAG_FULLMESH = 1 << 3;
    public const uint MPTCP_PM_ADDR_FLAG_IMPLICIT = 1 << 4;
    public const uint MPTCP_PM_ADDR_FLAG_LAMINAR = 1 << 5;

    public const byte MPTCP_EVENT_CREATED = 1;
    public const byte MPTCP_EVENT_ESTABLISHED = 2;
    public const byte MPTCP_EVENT_CLOSED = 3;
    public const byte MPTCP_EVENT_ANNOUNCED = 6;
    public const byte MPTCP_EVENT_REMOVED = 7;
    public const byte MPTCP_EVENT_SUB_ESTABLISHED = 10;
    public const byte MPTCP_EVENT_SUB_CLOSED = 11;
    public const byte MPTCP_EVENT_SUB_PRIORITY = 13;
    public const byte MPTCP_EVENT_LISTENER_CREATED = 15;
    public const byte MPTCP_EVENT_LISTENER_CLOSED = 16;

    public const ushort MPTCP_ATTR_TOKEN = 1;
    public const ushort MPTCP_ATTR_FAMILY = 2;
    public const ushort MPTCP_ATTR_LOC_ID = 3;
    public const ushort MPTCP_ATTR_REM_ID = 4;
    public const ushort MPTCP_ATTR_SADDR4 = 5;
    public const ushort MPTCP_ATTR_SADDR6 = 6;
    public const ushort MPTCP_ATTR_DADDR4 = 7;
    public const ushort MPTCP_ATTR_DADDR6 = 8;
    public const ushort MPTCP_ATTR_SPORT = 9;
    public const ushort MPTCP_ATTR_DPORT = 10;
    public const ushort MPTCP_ATTR_BACKUP = 11;
    public const ushort MPTCP_ATTR_ERROR = 12;
    public const ushort MPTCP_ATTR_FLAGS = 13;
    public const ushort MPTCP_ATTR_TIMEOUT = 14;
    public const ushort MPTCP_ATTR_IF_IDX = 15;
    public const ushort MPTCP_ATTR_RESET_REASON = 16;
    public const ushort MPTCP_ATTR_RESET_FLAGS = 17;
    public const ushort MPTCP_ATTR_SERVER_SIDE = 18;
}
