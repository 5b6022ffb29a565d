using System.Net;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Kestrel.Control;

/// <summary><see cref="IPathManager"/> over the kernel's <c>mptcp_pm</c> generic-netlink family, in Userspace and Kernel mode alike.</summary>
internal sealed class NetlinkPathManager : IPathManager
{
    /// <summary>
    /// The events the control path needs: joins and lost anycast subflows. Not CLOSED: Kestrel reports every close, and
    /// a CLOSED per connection would be work for the kernel and a wake-up of the event thread at every connection.
    /// </summary>
    private static readonly PathManagerEventType[] EventTypes = [PathManagerEventType.SubflowEstablished, PathManagerEventType.SubflowClosed];

    private IDisposable? _subscription;

    private NetlinkPathManager(PathManagerClient client) => Client = client;

    /// <summary>The client: the endpoint commands at start-up use it directly.</summary>
    public PathManagerClient Client { get; }

    /// <summary>Opens a client in the calling thread's namespace.</summary>
    /// <exception cref="PathManagerException">No MPTCP path manager here, or netlink failed.</exception>
    public static NetlinkPathManager Open(PathManagerClientOptions options) => new(PathManagerClient.Open(options));

    public void Announce(uint token, byte addressId, IPEndPoint address) =>
        Client.AnnounceAsync(token, addressId, address).GetAwaiter().GetResult(); // complete when it returns: see PathManagerClient

    public void SetBackup(uint token, IPEndPoint local, IPEndPoint remote, bool backup) =>
        Client.SetSubflowBackupAsync(token, local, remote, backup).GetAwaiter().GetResult();

    public void DestroySubflow(uint token, IPEndPoint local, IPEndPoint remote) =>
        Client.DestroySubflowAsync(token, local, remote).GetAwaiter().GetResult();

    public bool TrySubscribe(IPathManagerEventHandler handler, out string? problem)
    {
        try
        {
            Interlocked.Exchange(ref _subscription, Client.AddEventHandler(handler, EventTypes))?.Dispose();
            problem = null;
            return true;
        }
        catch (PathManagerException ex)
        {
            problem = ex.Message;
            return false;
        }
        catch (ObjectDisposedException)
        {
            problem = "the path-manager client is closed";
            return false;
        }
    }

    public ValueTask DisposeAsync()
    {
        Interlocked.Exchange(ref _subscription, null)?.Dispose();
        return Client.DisposeAsync();
    }
}
