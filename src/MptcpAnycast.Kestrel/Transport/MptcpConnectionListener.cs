using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging;
using MptcpAnycast.Kestrel.Connections;
using MptcpAnycast.Kestrel.Control;
using MptcpAnycast.Kestrel.Diagnostics;

namespace MptcpAnycast.Kestrel.Transport;

/// <summary>
/// One Kestrel endpoint: an MPTCP listen socket whose accepted sockets go to Kestrel's own
/// <see cref="SocketConnectionContextFactory"/>, each with its <see cref="IMptcpConnectionFeature"/>.
/// </summary>
internal sealed class MptcpConnectionListener : IConnectionListener
{
    private readonly Socket _listenSocket;
    private readonly SocketConnectionContextFactory _contextFactory;
    private readonly ControlPath _control;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly bool _noDelay;
    private readonly IReadOnlyList<JoinListener> _joinListeners;

    public MptcpConnectionListener(Socket listenSocket, SocketConnectionContextFactory contextFactory, ControlPath control,
        ILogger logger, TimeProvider time, bool noDelay, IReadOnlyList<JoinListener> joinListeners)
    {
        _listenSocket = listenSocket;
        _contextFactory = contextFactory;
        _control = control;
        _logger = logger;
        _time = time;
        _noDelay = noDelay;
        _joinListeners = joinListeners;
        EndPoint = listenSocket.LocalEndPoint!;
    }

    public EndPoint EndPoint { get; }

    /// <summary>
    /// Accept, create the connection, return: as Kestrel's own socket listener. The one getsockopt (<c>MPTCP_INFO</c>)
    /// is part of creating the connection, since its feature reports from the start whether it is MPTCP and its token;
    /// everything that talks to the path manager is queued for the control path.
    /// </summary>
    public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            Socket socket;
            try
            {
                socket = await _listenSocket.AcceptAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (ObjectDisposedException)
            {
                return null; // unbound
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.OperationAborted)
            {
                return null; // unbound
            }
            catch (SocketException)
            {
                // Reset while in the backlog: try the next one.
                MptcpAnycastLog.ConnectionReset(_logger, EndPoint);
                continue;
            }

            try
            {
                socket.NoDelay = _noDelay;
                MptcpConnectionInfo info = MptcpSocket.GetConnectionInfo(socket);
                ConnectionContext context = _contextFactory.Create(socket);
                var connection = new TrackedConnection(socket, info, context.ConnectionId, context.LocalEndPoint as IPEndPoint,
                    context.RemoteEndPoint as IPEndPoint, _time.GetUtcNow());
                var feature = new MptcpConnectionFeature(connection, _control);
                context.Features.Set<IMptcpConnectionFeature>(feature);
                context.ConnectionClosed.UnsafeRegister(static f => ((MptcpConnectionFeature)f!).OnConnectionClosed(), feature);
                _control.OnAccepted(connection);
                return context;
            }
            catch (SocketException)
            {
                // The peer went away between accept and setup.
                socket.Dispose();
                MptcpAnycastLog.ConnectionReset(_logger, EndPoint);
            }
        }
    }

    public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
    {
        _listenSocket.Dispose();
        foreach (JoinListener join in _joinListeners)
        {
            join.Release();
        }

        return default;
    }

    public ValueTask DisposeAsync() => UnbindAsync();
}
