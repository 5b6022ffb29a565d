using System.Buffers.Binary;
using MptcpAnycast.Interop;

namespace MptcpAnycast;

/// <summary>Why a connection is not (or no longer) Multipath TCP.</summary>
public enum MptcpFallbackReason
{
    /// <summary>The connection speaks MPTCP.</summary>
    None = 0,

    /// <summary>
    /// The socket is plain TCP: on a server, the client did not offer MPTCP (or a middlebox removed the option);
    /// on a client, the socket was created as TCP.
    /// </summary>
    PlainTcpSocket,

    /// <summary>
    /// The MPTCP socket fell back to TCP: the peer did not echo MP_CAPABLE (no MPTCP there, or the option was
    /// stripped on the way), or the kernel fell back later (checksum failure, middlebox interference).
    /// </summary>
    FellBackToTcp,
}

/// <summary>Flags of <c>struct mptcp_info</c> (<c>mptcpi_flags</c>).</summary>
[Flags]
public enum MptcpInfoFlags : uint
{
    /// <summary>No flag.</summary>
    None = 0,

    /// <summary>The connection fell back to TCP (<c>MPTCP_INFO_FLAG_FALLBACK</c>).</summary>
    Fallback = 1u << 0,

    /// <summary>The peer's key has been received (<c>MPTCP_INFO_FLAG_REMOTE_KEY_RECEIVED</c>).</summary>
    RemoteKeyReceived = 1u << 1,
}

/// <summary>A snapshot of an MPTCP connection's state (<c>struct mptcp_info</c>), read by <see cref="MptcpSocket.GetConnectionInfo"/>.</summary>
/// <remarks>Fields newer than the running kernel read as 0.</remarks>
public readonly struct MptcpConnectionInfo
{
    /// <summary>True when the connection speaks MPTCP; false when it is, or fell back to, plain TCP.</summary>
    public bool IsMptcp => FallbackReason == MptcpFallbackReason.None;

    /// <summary>Why the connection is not MPTCP, or <see cref="MptcpFallbackReason.None"/>.</summary>
    public MptcpFallbackReason FallbackReason { get; private init; }

    /// <summary>The connection token: the same number that path-manager commands and events use. 0 when not MPTCP.</summary>
    public uint Token { get; private init; }

    /// <summary>Additional subflows now open, not counting the initial one (<c>mptcpi_subflows</c>).</summary>
    public int AdditionalSubflows { get; private init; }

    /// <summary>Subflows now open, including the initial one (<c>mptcpi_subflows_total</c>, Linux 6.10+); 0 when unknown.</summary>
    public int SubflowsTotal { get; private init; }

    /// <summary>The most additional subflows this connection may have (<c>mptcpi_subflows_max</c>).</summary>
    public int SubflowsMax { get; private init; }

    /// <summary>Addresses this end has announced with ADD_ADDR (<c>mptcpi_add_addr_signal</c>).</summary>
    public int AddAddrSignal { get; private init; }

    /// <summary>Addresses announced by the peer that this end accepted (<c>mptcpi_add_addr_accepted</c>).</summary>
    public int AddAddrAccepted { get; private init; }

    /// <summary>Limit on addresses this end announces (<c>mptcpi_add_addr_signal_max</c>).</summary>
    public int AddAddrSignalMax { get; private init; }

    /// <summary>Limit on peer announcements this end accepts (<c>mptcpi_add_addr_accepted_max</c>).</summary>
    public int AddAddrAcceptedMax { get; private init; }

    /// <summary>Local addresses in use (<c>mptcpi_local_addr_used</c>).</summary>
    public int LocalAddrUsed { get; private init; }

    /// <summary>The connection's flags.</summary>
    public MptcpInfoFlags Flags { get; private init; }

    /// <summary>Data sequence number of the next byte to send (<c>mptcpi_write_seq</c>).</summary>
    public ulong WriteSequence { get; private init; }

    /// <summary>Oldest unacknowledged data sequence number (<c>mptcpi_snd_una</c>).</summary>
    public ulong SendUnacknowledged { get; private init; }

    /// <summary>Next data sequence number expected from the peer (<c>mptcpi_rcv_nxt</c>).</summary>
    public ulong ReceiveNext { get; private init; }

    /// <summary>MPTCP-level retransmissions (<c>mptcpi_retransmits</c>).</summary>
    public uint Retransmits { get; private init; }

    /// <summary>Bytes retransmitted at the MPTCP level (<c>mptcpi_bytes_retrans</c>).</summary>
    public ulong BytesRetransmitted { get; private init; }

    /// <summary>Bytes sent, all subflows (<c>mptcpi_bytes_sent</c>).</summary>
    public ulong BytesSent { get; private init; }

    /// <summary>Bytes received, all subflows (<c>mptcpi_bytes_received</c>).</summary>
    public ulong BytesReceived { get; private init; }

    /// <summary>Bytes acknowledged by the peer (<c>mptcpi_bytes_acked</c>).</summary>
    public ulong BytesAcked { get; private init; }

    /// <summary>Milliseconds since data was last sent (<c>mptcpi_last_data_sent</c>).</summary>
    public uint LastDataSentMilliseconds { get; private init; }

    /// <summary>Milliseconds since data was last received (<c>mptcpi_last_data_recv</c>).</summary>
    public uint LastDataReceivedMilliseconds { get; private init; }

    internal static MptcpConnectionInfo FallenBack(MptcpFallbackReason reason) => new() { FallbackReason = reason };

    internal static MptcpConnectionInfo Parse(ReadOnlySpan<byte> info)
    {
        Span<byte> full = stackalloc byte[MptcpInfoLayout.Size];
        full.Clear();
        info[..Math.Min(info.Length, full.Length)].CopyTo(full);
        var flags = (MptcpInfoFlags)BinaryPrimitives.ReadUInt32LittleEndian(full[MptcpInfoLayout.mptcpi_flags..]);
        return new MptcpConnectionInfo
        {
            Retransmits = BinaryPrimitives.ReadUInt32LittleEndian(full[MptcpInfoLayout.mptcpi_retransmits..]),
            FallbackReason = (flags & MptcpInfoFlags.Fallback) != 0 ? MptcpFallbackReason.FellBackToTcp : MptcpFallbackReason.None,
            AdditionalSubflows = full[MptcpInfoLayout.mptcpi_subflows],
            AddAddrSignal = full[MptcpInfoLayout.mptcpi_add_addr_signal],
            AddAddrAccepted = full[MptcpInfoLayout.mptcpi_add_addr_accepted],
            SubflowsMax = full[MptcpInfoLayout.mptcpi_subflows_max],
            AddAddrSignalMax = full[MptcpInfoLayout.mptcpi_add_addr_signal_max],
            AddAddrAcceptedMax = full[MptcpInfoLayout.mptcpi_add_addr_accepted_max],
            Flags = flags,
            Token = BinaryPrimitives.ReadUInt32LittleEndian(full[MptcpInfoLayout.mptcpi_token..]),
            WriteSequence = BinaryPrimitives.ReadUInt64LittleEndian(full[MptcpInfoLayout.mptcpi_write_seq..]),
            SendUnacknowledged = BinaryPrimitives.ReadUInt64LittleEndian(full[MptcpInfoLayout.mptcpi_snd_una..]),
            ReceiveNext = BinaryPrimitives.ReadUInt64LittleEndian(full[MptcpInfoLayout.mptcpi_rcv_nxt..]),
            LocalAddrUsed = full[MptcpInfoLayout.mptcpi_local_addr_used],
            BytesRetransmitted = BinaryPrimitives.ReadUInt64LittleEndian(full[MptcpInfoLayout.mptcpi_bytes_retrans..]),
            BytesSent = BinaryPrimitives.ReadUInt64LittleEndian(full[MptcpInfoLayout.mptcpi_bytes_sent..]),
            BytesReceived = BinaryPrimitives.ReadUInt64LittleEndian(full[MptcpInfoLayout.mptcpi_bytes_received..]),
            BytesAcked = BinaryPrimitives.ReadUInt64LittleEndian(full[MptcpInfoLayout.mptcpi_bytes_acked..]),
            SubflowsTotal = full[MptcpInfoLayout.mptcpi_subflows_total],
            LastDataSentMilliseconds = BinaryPrimitives.ReadUInt32LittleEndian(full[MptcpInfoLayout.mptcpi_last_data_sent..]),
            LastDataReceivedMilliseconds = BinaryPrimitives.ReadUInt32LittleEndian(full[MptcpInfoLayout.mptcpi_last_data_recv..]),
        };
    }

    /// <inheritdoc />
    public override string ToString() => IsMptcp
        ? $"MPTCP token {Token:x8}, subflows {(SubflowsTotal > 0 ? SubflowsTotal : AdditionalSubflows + 1)}, add_addr accepted {AddAddrAccepted}, signalled {AddAddrSignal}"
        : $"TCP ({FallbackReason})";
}
