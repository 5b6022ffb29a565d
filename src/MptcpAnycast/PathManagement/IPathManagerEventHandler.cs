namespace MptcpAnycast.PathManagement;

/// <summary>
/// Receives path-manager events on the client's event thread, as the kernel delivers them
/// (<see cref="PathManagerClient.AddEventHandler"/>).
/// This is the core of event delivery: <see cref="PathManagerEventSubscription"/> is a buffered reader built on it.
/// </summary>
/// <remarks>
/// Both methods run on the one thread that reads the event socket, so the next event waits until they return: they
/// must not block or do I/O (hand slow work to a queue of your own). An exception they throw ends nothing; it is
/// swallowed so that other handlers still get their events.
/// </remarks>
public interface IPathManagerEventHandler
{
    /// <summary>
    /// One event of a wanted type, in kernel order; or a <see cref="PathManagerEventType.EventsLost"/> marker where
    /// the kernel dropped events (its socket buffer overflowed), sent once the backlog has been read.
    /// </summary>
    void OnEvent(PathManagerEvent pathManagerEvent);

    /// <summary>
    /// The subscription has ended: <paramref name="error"/> is null when it or its client was disposed, else the
    /// failure of the event socket (subscribe again, and reconcile what happened in between).
    /// </summary>
    void OnCompleted(PathManagerException? error);
}
