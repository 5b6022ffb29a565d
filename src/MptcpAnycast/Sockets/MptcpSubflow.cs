using System.Net;

namespace MptcpAnycast;

/// <summary>One subflow of an MPTCP connection: the TCP path between a local and a remote address.</summary>
/// <param name="Local">The local address and port of the subflow.</param>
/// <param name="Remote">The remote address and port of the subflow.</param>
public readonly record struct MptcpSubflow(IPEndPoint Local, IPEndPoint Remote)
{
    /// <inheritdoc />
    public override string ToString() => $"{Local} <-> {Remote}";
}
