using MptcpAnycast.Interop;

namespace MptcpAnycast.Rescue.Ownership;

/// <summary>A TCP socket's state as the kernel reports it (<c>idiag_state</c>); <see cref="None"/> when there is no socket.</summary>
internal enum TcpState : byte
{
    None = 0,
    Established = TcpStates.TCP_ESTABLISHED,
    SynSent = TcpStates.TCP_SYN_SENT,
    SynReceived = TcpStates.TCP_SYN_RECV,
    FinWait1 = TcpStates.TCP_FIN_WAIT1,
    FinWait2 = TcpStates.TCP_FIN_WAIT2,
    TimeWait = TcpStates.TCP_TIME_WAIT,
    Close = TcpStates.TCP_CLOSE,
    CloseWait = TcpStates.TCP_CLOSE_WAIT,
    LastAck = TcpStates.TCP_LAST_ACK,
    Listen = TcpStates.TCP_LISTEN,
    Closing = TcpStates.TCP_CLOSING,
    NewSynReceived = TcpStates.TCP_NEW_SYN_RECV,
    BoundInactive = TcpStates.TCP_BOUND_INACTIVE,
}

/// <summary>
/// Whether this host's kernel holds a flow's connection: owned when the socket it finds for the flow would take the
/// flow's segments (any state of a connection, time-wait included), not owned when it finds none, only a listener
/// (which would answer a mid-connection segment with a reset) or a socket already closed.
/// </summary>
internal readonly record struct SocketOwnership
{
    private SocketOwnership(bool isOwned, TcpState state)
    {
        IsOwned = isOwned;
        State = state;
    }

    /// <summary>No socket at all matches the flow.</summary>
    public static SocketOwnership NoSocket => new(false, TcpState.None);

    /// <summary>Only a listener on the flow's server port matches: the connection is not here.</summary>
    public static SocketOwnership ListenerOnly => new(false, TcpState.Listen);

    public bool IsOwned { get; }

    /// <summary>The state of the socket the kernel found: <see cref="TcpState.None"/> when none, <see cref="TcpState.Listen"/> for a listener.</summary>
    public TcpState State { get; }

    /// <summary>What the kernel's socket in <paramref name="state"/> means for the flow: a listener or a closed socket does not hold it.</summary>
    public static SocketOwnership Of(TcpState state) =>
        new(state is not (TcpState.None or TcpState.Listen or TcpState.Close or TcpState.BoundInactive), state);
}
