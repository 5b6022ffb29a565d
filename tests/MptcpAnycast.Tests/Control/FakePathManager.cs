using System.Collections.Concurrent;
using System.Net;
using MptcpAnycast.Interop;
using MptcpAnycast.Kestrel.Control;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Tests.Control;

/// <summary>A path manager that records commands and lets a test inject events (as the event thread would), failures and refusals.</summary>
internal sealed class FakePathManager : IPathManager
{
    private volatile IPathManagerEventHandler? _handler;
    private int _subscribeCalls;

    public ConcurrentQueue<string> Calls { get; } = new();

    /// <summary>Runs inside each ANNOUNCE: throw to fail it, block to hold the control loop.</summary>
    public Action<uint, IPEndPoint> Announce { get; set; } = static (_, _) => { };

    /// <summary>Decides each subscription (true: it works); default: works.</summary>
    public Func<bool> Subscribe { get; set; } = static () => true;

    public int SubscribeCalls => Volatile.Read(ref _subscribeCalls);

    /// <summary>A path-manager error of <paramref name="errno"/>, e.g. <see cref="Errno.ENOBUFS"/> (transient) or <see cref="Errno.EPERM"/> (unavailable).</summary>
    public static PathManagerException Failure(int errno, string command = "ANNOUNCE") => new(command, errno, "fake kernel refusal");

    /// <summary>Delivers an event to the subscriber, on the calling thread, as the client's event thread does.</summary>
    public void Emit(PathManagerEvent e) => _handler?.OnEvent(e);

    /// <summary>A subflow of connection <paramref name="token"/> from <paramref name="local"/> established (the client joined there).</summary>
    public void EmitJoin(uint token, IPEndPoint local) =>
        Emit(new PathManagerEvent { Type = PathManagerEventType.SubflowEstablished, Token = token, Source = local, Destination = IPEndPoint.Parse("127.0.0.1:5555") });

    /// <summary>Ends the subscription with <paramref name="error"/>, as a failed event socket does.</summary>
    public void FailEvents(PathManagerException error)
    {
        IPathManagerEventHandler? handler = Interlocked.Exchange(ref _handler, null);
        handler?.OnCompleted(error);
    }

    public bool TrySubscribe(IPathManagerEventHandler handler, out string? problem)
    {
        Interlocked.Increment(ref _subscribeCalls);
        if (!Subscribe())
        {
            problem = "fake: the event socket cannot be opened";
            return false;
        }

        _handler = handler;
        problem = null;
        return true;
    }

    void IPathManager.Announce(uint token, byte addressId, IPEndPoint address)
    {
        Calls.Enqueue($"announce {token:x8} {addressId} {address}");
        Announce(token, address);
    }

    public void SetBackup(uint token, IPEndPoint local, IPEndPoint remote, bool backup) => Calls.Enqueue($"backup {token:x8} {local} {remote} {backup}");

    public void DestroySubflow(uint token, IPEndPoint local, IPEndPoint remote) => Calls.Enqueue($"destroy {token:x8} {local} {remote}");

    public ValueTask DisposeAsync()
    {
        _handler = null;
        return default;
    }
}
