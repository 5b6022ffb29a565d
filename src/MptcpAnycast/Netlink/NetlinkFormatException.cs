namespace MptcpAnycast.Netlink;

/// <summary>
/// The one error the netlink readers raise for malformed input: a truncated header, a length past the buffer,
/// an attribute shorter than its type needs. Nothing else escapes a reader.
/// </summary>
internal sealed class NetlinkFormatException(string message) : Exception(message);
