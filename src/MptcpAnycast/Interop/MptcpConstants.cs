namespace MptcpAnycast.Interop;

// Values mirror Linux uapi headers (linux/in.h, linux/mptcp.h, linux/tcp.h, asm-generic/socket.h).
// Names are the C names so that they can be grepped for in the kernel and checked against the
// installed headers by KernelHeaderTests.
#pragma warning disable IDE1006 // C names

/// <summary>MPTCP socket constants and <c>struct mptcp_info</c> layout.</summary>
internal static class MptcpConstants
{
    public const int IPPROTO_TCP = 6;
    public const int IPPROTO_MPTCP = 262;
    public const int SOL_MPTCP = 284;
    public const int SOL_SOCKET = 1;

    public const int SO_PROTOCOL = 38;
    public const int SO_REUSEADDR = 2;
    public const int TCP_IS_MPTCP = 43;

    public const int MPTCP_INFO = 1;
    public const int MPTCP_TCPINFO = 2;
    public const int MPTCP_SUBFLOW_ADDRS = 3;
    public const int MPTCP_FULL_INFO = 4;

    public const uint MPTCP_INFO_FLAG_FALLBACK = 1u << 0;
    public const uint MPTCP_INFO_FLAG_REMOTE_KEY_RECEIVED = 1u << 1;

    public const int AF_INET = 2;
    public const int AF_INET6 = 10;
}

/// <summary>Byte offsets in <c>struct mptcp_info</c> (x86-64 and every LP64/ILP32 Linux ABI: only natural alignment).</summary>
internal static class MptcpInfoLayout
{
    public const int mptcpi_subflows = 0;
    public const int mptcpi_add_addr_signal = 1;
    public const int mptcpi_add_addr_accepted = 2;
    public const int mptcpi_subflows_max = 3;
    public const int mptcpi_add_addr_signal_max = 4;
    public const int mptcpi_add_addr_accepted_max = 5;
    public const int mptcpi_flags = 8;
    public const int mptcpi_token = 12;
    public const int mptcpi_write_seq = 16;
    public const int mptcpi_snd_una = 24;
    public const int mptcpi_rcv_nxt = 32;
    public const int mptcpi_local_addr_used = 40;
    public const int mptcpi_local_addr_max = 41;
    public const int mptcpi_csum_enabled = 42;
    public const int mptcpi_retransmits = 44;
    public const int mptcpi_bytes_retrans = 48;
    public const int mptcpi_bytes_sent = 56;
    public const int mptcpi_bytes_received = 64;
    public const int mptcpi_bytes_acked = 72;
    public const int mptcpi_subflows_total = 80;
    public const int mptcpi_last_data_sent = 84;
    public const int mptcpi_last_data_recv = 88;
    public const int mptcpi_last_ack_recv = 92;
    public const int Size = 96;
}

/// <summary>Layout of <c>struct mptcp_subflow_data</c> and <c>struct mptcp_subflow_addrs</c>.</summary>
internal static class MptcpSubflowLayout
{
    // struct mptcp_subflow_data { __u32 size_subflow_data, num_subflows, size_kernel, size_user; } __aligned(8)
    public const int size_subflow_data = 0;
    public const int num_subflows = 4;
    public const int size_kernel = 8;
    public const int size_user = 12;
    public const int SubflowDataSize = 16;

    // struct mptcp_subflow_addrs: two unions of struct __kernel_sockaddr_storage (128 bytes each).
    public const int ss_local = 0;
    public const int ss_remote = 128;
    public const int SubflowAddrsSize = 256;
}
