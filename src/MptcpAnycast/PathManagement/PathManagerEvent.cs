using System.Net;
using System.Net.Sockets;

namespace MptcpAnycast.PathManagement;

/// <summary>What a path-manager event reports (<c>enum mptcp_event_type</c>), plus <see cref="EventsLost"/>.</summary>
public enum PathManagerEventType
{
    /// <summary>Not an event the kernel sends; the value of an unknown <c>MPTCP_EVENT_*</c> is kept as is.</summary>
    Unspecified = 0,

    /// <summary>A connection was created (<c>MPTCP_EVENT_CREATED</c>): token, addresses, ports, server side.</summary>
    Created = 1,

    /// <summary>A connection is established and may open subflows (<c>MPTCP_EVENT_ESTABLISHED</c>).</summary>
    Established = 2,

    /// <summary>A connection closed (<c>MPTCP_EVENT_CLOSED</c>): token.</summary>
    Closed = 3,

    /// <summary>The peer announced an address (<c>MPTCP_EVENT_ANNOUNCED</c>): token, remote id, destination (address and port).</summary>
    Announced = 6,

    /// <summary>The peer removed an address (<c>MPTCP_EVENT_REMOVED</c>): token, remote id.</summary>
    Removed = 7,

    /// <summary>A subflow is established (<c>MPTCP_EVENT_SUB_ESTABLISHED</c>).</summary>
    SubflowEstablished = 10,

    /// <summary>A subflow closed (<c>MPTCP_EVENT_SUB_CLOSED</c>), with its error and reset reason when there was one.</summary>
    SubflowClosed = 11,

    /// <summary>A subflow's backup flag changed (<c>MPTCP_EVENT_SUB_PRIORITY</c>).</summary>
    SubflowPriority = 13,

    /// <summary>An MPTCP listener was created (<c>MPTCP_EVENT_LISTENER_CREATED</c>): family, source.</summary>
    ListenerCreated = 15,

    /// <summary>An MPTCP listener closed (<c>MPTCP_EVENT_LISTENER_CLOSED</c>).</summary>
    ListenerClosed = 16,

    /// <summary>
    /// Not a kernel event: events were lost before this point, because the kernel's socket buffer overflowed
    /// (<c>ENOBUFS</c>) or because the subscriber's bounded buffer was full. Resynchronise from socket state if it matters.
    /// </summary>
    EventsLost = 1000,
}

/// <summary>
/// One MPTCP path-manager event with every attribute the kernel sent; absent attributes are null. Source is the
/// event's <c>saddr</c>/<c>sport</c> (this host's side), Destination its <c>daddr</c>/<c>dport</c> (the peer's side,
/// or the announced address for <see cref="PathManagerEventType.Announced"/>).
/// </summary>
public sealed class PathManagerEvent
{
    internal static readonly PathManagerEvent Lost = new() { Type = PathManagerEventType.EventsLost };

    /// <summary>The event type.</summary>
    public PathManagerEventType Type { get; init; }

    /// <summary>The connection token (<c>MPTCP_ATTR_TOKEN</c>), the same as <see cref="MptcpConnectionInfo.Token"/>; 0 when absent.</summary>
    public uint Token { get; init; }

    /// <summary>The address family (<c>MPTCP_ATTR_FAMILY</c>), or <see cref="AddressFamily.Unspecified"/> when absent.</summary>
    public AddressFamily Family { get; init; }

    /// <summary>The local address id (<c>MPTCP_ATTR_LOC_ID</c>).</summary>
    public byte? LocalId { get; init; }

    /// <summary>The remote address id (<c>MPTCP_ATTR_REM_ID</c>).</summary>
    public byte? RemoteId { get; init; }

    /// <summary>The local address and port (<c>MPTCP_ATTR_SADDR4|6</c>, <c>MPTCP_ATTR_SPORT</c>; port 0 when absent).</summary>
    public IPEndPoint? Source { get; init; }

    /// <summary>The remote (or announced) address and port (<c>MPTCP_ATTR_DADDR4|6</c>, <c>MPTCP_ATTR_DPORT</c>; port 0 when absent).</summary>
    public IPEndPoint? Destination { get; init; }

    /// <summary>Whether the subflow is a backup subflow (<c>MPTCP_ATTR_BACKUP</c>).</summary>
    public bool? Backup { get; init; }

    /// <summary>The subflow's socket error (<c>MPTCP_ATTR_ERROR</c>, an errno).</summary>
    public int? Error { get; init; }

    /// <summary>Event flags (<c>MPTCP_ATTR_FLAGS</c>): bit 0 the peer set the C flag (deny join to its initial address and port).</summary>
    public int? Flags { get; init; }

    /// <summary>The ADD_ADDR retransmission timeout (<c>MPTCP_ATTR_TIMEOUT</c>).</summary>
    public uint? Timeout { get; init; }

    /// <summary>The interface index (<c>MPTCP_ATTR_IF_IDX</c>).</summary>
    public int? InterfaceIndex { get; init; }

    /// <summary>The MP_TCPRST reason (<c>MPTCP_ATTR_RESET_REASON</c>, <c>MPTCP_RST_*</c>).</summary>
    public uint? ResetReason { get; init; }

    /// <summary>The MP_TCPRST flags (<c>MPTCP_ATTR_RESET_FLAGS</c>).</summary>
    public uint? ResetFlags { get; init; }

    /// <summary>Whether this host is the server side of the connection (<c>MPTCP_ATTR_SERVER_SIDE</c>).</summary>
    public bool? ServerSide { get; init; }

    /// <inheritdoc />
    public override string ToString() => PathManagerEventFormatter.Text(this);
}
