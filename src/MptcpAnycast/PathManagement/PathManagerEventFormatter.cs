using System.Globalization;
using System.Net;
using System.Text;

namespace MptcpAnycast.PathManagement;

/// <summary>One line per event, every attribute present, in the kernel's attribute names.</summary>
internal static class PathManagerEventFormatter
{
    public static string TypeName(PathManagerEventType type) => type switch
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
        _ => "EVENT_" + ((int)type).ToString(CultureInfo.InvariantCulture),
    };

    /// <summary>The event's attributes as (kernel name, text) pairs, in attribute order.</summary>
    public static IEnumerable<(string Name, string Value)> Attributes(PathManagerEvent e)
    {
        if (e.Type == PathManagerEventType.EventsLost)
        {
            yield break;
        }

        yield return ("token", e.Token.ToString("x8", CultureInfo.InvariantCulture));
        if (e.Family != System.Net.Sockets.AddressFamily.Unspecified)
        {
            yield return ("family", e.Family == System.Net.Sockets.AddressFamily.InterNetworkV6 ? "inet6" : "inet");
        }

        if (e.LocalId is byte loc)
        {
            yield return ("loc_id", Invariant(loc));
        }

        if (e.RemoteId is byte rem)
        {
            yield return ("rem_id", Invariant(rem));
        }

        if (e.Source is IPEndPoint source)
        {
            yield return ("saddr", source.Address.ToString());
            yield return ("sport", Invariant(source.Port));
        }

        if (e.Destination is IPEndPoint destination)
        {
            yield return ("daddr", destination.Address.ToString());
            yield return ("dport", Invariant(destination.Port));
        }

        if (e.Backup is bool backup)
        {
            yield return ("backup", backup ? "1" : "0");
        }

        if (e.Error is int error)
        {
            yield return ("error", Invariant(error));
        }

        if (e.Flags is int flags)
        {
            yield return ("flags", "0x" + flags.ToString("x", CultureInfo.InvariantCulture));
        }

        if (e.Timeout is uint timeout)
        {
            yield return ("timeout", Invariant(timeout));
        }

        if (e.InterfaceIndex is int ifindex)
        {
            yield return ("if_idx", Invariant(ifindex));
        }

        if (e.ResetReason is uint reason)
        {
            yield return ("reset_reason", Invariant(reason));
        }

        if (e.ResetFlags is uint resetFlags)
        {
            yield return ("reset_flags", "0x" + resetFlags.ToString("x", CultureInfo.InvariantCulture));
        }

        if (e.ServerSide is bool server)
        {
            yield return ("server_side", server ? "1" : "0");
        }
    }

    public static string Text(PathManagerEvent e)
    {
        var text = new StringBuilder("[").Append(TypeName(e.Type)).Append(']');
        foreach ((string name, string value) in Attributes(e))
        {
            text.Append(' ').Append(name).Append('=').Append(value);
        }

        return text.ToString();
    }

    private static string Invariant<T>(T value) where T : IFormattable => value.ToString(null, CultureInfo.InvariantCulture);
}
