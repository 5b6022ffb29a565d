using System.Net;
using MptcpAnycast.Kestrel.Control;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Benchmarks;

/// <summary>A path manager that accepts every command at once and has no events: the control path's own cost, without the kernel's.</summary>
internal sealed class InstantPathManager : IPathManager
{
    public int Announcements;

    public void Announce(uint token, byte addressId, IPEndPoint address) => Interlocked.Increment(ref Announcements);

    public void SetBackup(uint token, IPEndPoint local, IPEndPoint remote, bool backup)
    {
    }

    public void DestroySubflow(uint token, IPEndPoint local, IPEndPoint remote)
    {
    }

    public bool TrySubscribe(IPathManagerEventHandler handler, out string? problem)
    {
        problem = null;
        return true;
    }

    public ValueTask DisposeAsync() => default;
}
