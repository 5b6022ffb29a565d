using MptcpAnycast.Kestrel.Connections;

namespace MptcpAnycast.Kestrel.Control;

/// <summary>The control path's fixed knobs: what production uses, and what tests turn to run fast and in parallel.</summary>
internal sealed record ControlPathTuning
{
    public static readonly ControlPathTuning Default = new();

    /// <summary>How long one path-manager command waits for the kernel (the command socket's <c>SO_RCVTIMEO</c>).</summary>
    public TimeSpan CommandTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>How long announcements pause once the path manager is found failing for everyone.</summary>
    public TimeSpan CircuitBreakDuration { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>After the event subscription broke: the first try to subscribe again, then twice as long each time up to the cap.</summary>
    public TimeSpan FirstResubscribeDelay { get; init; } = TimeSpan.FromMilliseconds(100);

    public TimeSpan MaxResubscribeDelay { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Reads a connection's subflows from its socket. Unit tests stand in for a client's join, which loopback cannot make.</summary>
    public Func<TrackedConnection, IReadOnlyList<MptcpSubflow>> ReadSubflows { get; init; } = static c => c.GetSubflows();
}
