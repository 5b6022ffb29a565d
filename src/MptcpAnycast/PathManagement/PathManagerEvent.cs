using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

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

    /// <summary>The event's name as the kernel's tools print it: <c>CREATED</c>, <c>SF_ESTABLISHED</c>, <c>EVENTS_LOST</c>...</summary>
    public string TypeName => Type switch
    {
        PathManagerEventType.Created => "CREATED",
        PathManagerEventType.Established => "ESTABLISHED",
        PathManagerEventType.Closed => "CLOSED",
        PathManagerEventType.Announced => "ANNOUNCED",
        PathManagerEventType.Removed => "REMOVED",
        PathManagerEventType.SubflowEstablished => "SF_ESTABLISHED",
        PathManagerEventType.SubflowClosed => "SF_CLOSED",
        PathManagerEventType.SubflowPriority => "SF_PRIO",
        PathManagerEventType.ListenerCreated => "LISTENER_CREATED",
        PathManagerEventType.ListenerClosed => "LISTENER_CLOSED",
        PathManagerEventType.EventsLost => "EVENTS_LOST",
        _ => "EVENT_" + ((int)Type).ToString(CultureInfo.InvariantCulture),
    };

    /// <summary>
    /// Every attribute the kernel sent, in attribute order, by its kernel name (<c>token</c>, <c>saddr</c>, <c>sport</c>...)
    /// with its value as text, as <c>ip mptcp monitor</c> shows them: the token and flags in hex, the rest in decimal.
    /// </summary>
    public IEnumerable<KeyValuePair<string, string>> GetAttributes()
    {
        PathManagerEvent e = this;
        if (e.Type == PathManagerEventType.EventsLost)
        {
            yield break;
        }

        yield return new("token", e.Token.ToString("x8", CultureInfo.InvariantCulture));
        if (e.Family != System.Net.Sockets.AddressFamily.Unspecified)
        {
            yield return new("family", e.Family == System.Net.Sockets.AddressFamily.InterNetworkV6 ? "inet6" : "inet");
        }

        if (e.LocalId is byte loc)
        {
            yield return new("loc_id", Invariant(loc));
        }

        if (e.RemoteId is byte rem)
        {
            yield return new("rem_id", Invariant(rem));
        }

        if (e.Source is IPEndPoint source)
        {
            yield return new("saddr", source.Address.ToString());
            yield return new("sport", Invariant(source.Port));
        }

        if (e.Destination is IPEndPoint destination)
        {
            yield return new("daddr", destination.Address.ToString());
            yield return new("dport", Invariant(destination.Port));
        }

        if (e.Backup is bool backup)
        {
            yield return new("backup", backup ? "1" : "0");
        }

        if (e.Error is int error)
        {
            yield return new("error", Invariant(error));
        }

        if (e.Flags is int flags)
        {
            yield return new("flags", "0x" + flags.ToString("x", CultureInfo.InvariantCulture));
        }

        if (e.Timeout is uint timeout)
        {
            yield return new("timeout", Invariant(timeout));
        }

        if (e.InterfaceIndex is int ifindex)
        {
            yield return new("if_idx", Invariant(ifindex));
        }

        if (e.ResetReason is uint reason)
        {
            yield return new("reset_reason", Invariant(reason));
        }

        if (e.ResetFlags is uint resetFlags)
        {
            yield return new("reset_flags", "0x" + resetFlags.ToString("x", CultureInfo.InvariantCulture));
        }

        if (e.ServerSide is bool server)
        {
            yield return new("server_side", server ? "1" : "0");
        }
    }

    /// <summary>One line: <c>[TYPE] name=value ...</c> with every attribute (see <see cref="GetAttributes"/>).</summary>
    public override string ToString()
    {
        var text = new StringBuilder("[").Append(TypeName).Append(']');
        foreach ((string name, string value) in GetAttributes())
        {
            text.Append(' ').Append(name).Append('=').Append(value);
        }

        return text.ToString();
    }

    private static string Invariant<T>(T value) where T : IFormattable => value.ToString(null, CultureInfo.InvariantCulture);
}
