using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Microsoft.Extensions.DependencyInjection;
using MptcpAnycast.Kestrel.Announcing;
using MptcpAnycast.Kestrel.Diagnostics;

namespace MptcpAnycast.Tests.Kestrel;

/// <summary>A path manager that records commands, lets a test inject events and failures.</summary>
internal sealed class FakePathManager : IPathManager
{
    private volatile Channel<PathEvent> _events = Channel.CreateUnbounded<PathEvent>();
    private int _resubscribeCalls;

    public ConcurrentQueue<string> Calls { get; } = new();

    public Func<uint, IPEndPoint, Task> Announce { get; set; } = (_, _) => Task.CompletedTask;

    public bool WithEvents { get; init; } = true;

    /// <summary>Decides each attempt to subscribe again (true: a fresh stream); default: works.</summary>
    public Func<bool> Resubscribe { get; set; } = () => true;

    public int ResubscribeCalls => Volatile.Read(ref _resubscribeCalls);

    public void Emit(PathEvent e) => _events.Writer.TryWrite(e);

    /// <summary>Ends the current event stream with <paramref name="error"/>, as a failed event socket does; null: ends it quietly.</summary>
    public void FailEvents(Exception? error) => _events.Writer.TryComplete(error);

    public bool TryResubscribeEvents(out string? problem)
    {
        Interlocked.Increment(ref _resubscribeCalls);
        if (!Resubscribe())
        {
            problem = "fake: the event socket cannot be opened";
            return false;
        }

        _events = Channel.CreateUnbounded<PathEvent>();
        problem = null;
        return true;
    }

    public Task AnnounceAsync(uint token, byte addressId, IPEndPoint address, CancellationToken cancellationToken)
    {
        Calls.Enqueue($"announce {token:x8} {addressId} {address}");
        return Announce(token, address);
    }

    public Task SetBackupAsync(uint token, IPEndPoint local, IPEndPoint remote, bool backup, CancellationToken cancellationToken)
    {
        Calls.Enqueue($"backup {token:x8} {local} {remote} {backup}");
        return Task.CompletedTask;
    }

    public Task DestroySubflowAsync(uint token, IPEndPoint local, IPEndPoint remote, CancellationToken cancellationToken)
    {
        Calls.Enqueue($"destroy {token:x8} {local} {remote}");
        return Task.CompletedTask;
    }

    public IAsyncEnumerable<PathEvent>? Events => WithEvents ? _events.Reader.ReadAllAsync() : null;

    public PathManagerFailure Classify(Exception exception) => exception is FakePathManagerException f ? f.Kind : PathManagerFailure.Systemic;

    public ValueTask DisposeAsync()
    {
        _events.Writer.TryComplete();
        return default;
    }
}

internal sealed class FakePathManagerException(PathManagerFailure kind) : Exception($"fake {kind} failure")
{
    public PathManagerFailure Kind { get; } = kind;
}
