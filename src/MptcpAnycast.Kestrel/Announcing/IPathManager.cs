using System.Net;

namespace MptcpAnycast.Kestrel.Announcing;

internal enum PathEventKind
{
    Other = 0,
    Created,
    Established,
    Closed,
    SubflowEstablished,
    SubflowClosed,

    /// <summary>Events were lost (kernel ENOBUFS or a full buffer): state must be reconciled from the sockets.</summary>
    EventsLost,
}

/// <summary>A path-manager event as the announcer needs it. On the server, <see cref="Local"/> is the server side.</summary>
internal readonly record struct PathEvent(PathEventKind Kind, uint Token, IPEndPoint? Local, IPEndPoint? Remote);

/// <summary>How a failed path-manager command should be treated.</summary>
internal enum PathManagerFailure
{
    /// <summary>Try again shortly (ENOBUFS, EAGAIN, EBUSY, EINTR).</summary>
    Transient,

    /// <summary>Only this connection is concerned (its token is gone: it closed meanwhile).</summary>
    Connection,

    /// <summary>The path manager itself is unavailable (family gone, no permission, socket broken).</summary>
    Systemic,
}

/// <summary>The path-manager operations the transport needs; one implementation talks to the kernel, tests inject faults.</summary>
internal interface IPathManager : IAsyncDisposable
{
    Task AnnounceAsync(uint token, byte addressId, IPEndPoint address, CancellationToken cancellationToken);

    Task SetBackupAsync(uint token, IPEndPoint local, IPEndPoint remote, bool backup, CancellationToken cancellationToken);

    Task DestroySubflowAsync(uint token, IPEndPoint local, IPEndPoint remote, CancellationToken cancellationToken);

    /// <summary>
    /// The event stream, or null when events cannot be followed (no CAP_NET_ADMIN). Ends when disposed; ends with an
    /// exception when the subscription to the kernel broke (then <see cref="TryResubscribeEvents"/>).
    /// </summary>
    IAsyncEnumerable<PathEvent>? Events { get; }

    /// <summary>
    /// Subscribes to the kernel's events again after <see cref="Events"/> ended with an error; on success
    /// <see cref="Events"/> is the new stream. Returns false with the reason when it failed (try again later).
    /// </summary>
    bool TryResubscribeEvents(out string? problem);

    PathManagerFailure Classify(Exception exception);
}
