using System.Net;
using MptcpAnycast.Kestrel.Announcing;

namespace MptcpAnycast.Benchmarks;

/// <summary>A path manager that accepts every command at once and has no events: the announcer's own cost, without the kernel's.</summary>
internal sealed class InstantPathManager : IPathManager
{
    public int Announcements;

    public Task AnnounceAsync(uint token, byte addressId, IPEndPoint address, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref Announcements);
        return Task.CompletedTask;
    }

    public Task SetBackupAsync(uint token, IPEndPoint local, IPEndPoint remote, bool backup, CancellationToken cancellationToken) => Task.CompletedTask;

    public Task DestroySubflowAsync(uint token, IPEndPoint local, IPEndPoint remote, CancellationToken cancellationToken) => Task.CompletedTask;

    public IAsyncEnumerable<PathEvent>? Events => null;

    public bool TryResubscribeEvents(out string? problem)
    {
        problem = "no events here";
        return false;
    }

    public PathManagerFailure Classify(Exception exception) => PathManagerFailure.Systemic;

    public ValueTask DisposeAsync() => default;
}
