namespace MptcpAnycast;

/// <summary>What to do when the host cannot create an MPTCP socket.</summary>
public enum MptcpFallback
{
    /// <summary>Throw a <see cref="System.Net.Sockets.SocketException"/> that says why MPTCP is unavailable.</summary>
    None = 0,

    /// <summary>Create a plain TCP socket instead. The connection then works as ordinary single-path TCP.</summary>
    Tcp = 1,
}
