using System.Net;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Kestrel.Control;

/// <summary>
/// The path-manager operations the control path needs. <see cref="NetlinkPathManager"/> talks to the kernel; tests
/// stand in for it to inject events and failures. Commands are synchronous and throw <see cref="PathManagerException"/>
/// (its <see cref="PathManagerException.Kind"/> says whether to retry).
/// </summary>
internal interface IPathManager : IAsyncDisposable
{
    void Announce(uint token, byte addressId, IPEndPoint address);

    void SetBackup(uint token, IPEndPoint local, IPEndPoint remote, bool backup);

    void DestroySubflow(uint token, IPEndPoint local, IPEndPoint remote);

    /// <summary>
    /// Hands subflow events (established, closed) and lost-event markers to <paramref name="handler"/>, replacing an
    /// earlier subscription. False, with the reason, when the kernel refuses (no <c>CAP_NET_ADMIN</c>).
    /// </summary>
    bool TrySubscribe(IPathManagerEventHandler handler, out string? problem);
}
