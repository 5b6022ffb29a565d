using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging;
using MptcpAnycast.Kestrel.Announcing;
using MptcpAnycast.Kestrel.Diagnostics;

namespace MptcpAnycast.Kestrel.Internal;

/// <summary>
/// One Kestrel endpoint: an MPTCP listen socket whose accepted sockets go to Kestrel's own
/// <see cref="SocketConnectionContextFactory"/>, each with its <see cref="IMptcpConnectionFeature"/>.
/// </summary>
internal sealed class MptcpConnectionListener : IConnectionListener
{
    private readonly Socket _listenSocket;
    private readonly SocketConnectionContextFactory _contextFactory;
    private readonly UnicastAnnouncer _announcer;
    private readonly ILogger _logger;
    private readonly bool _noDelay;
    private readonly IReadOnlyList<JoinListener> _joinListeners;
    private long _connectionCount;

    public MptcpConnectionListener(Socket listenSocket, SocketConnectionContextFactory contextFactory, UnicastAnnouncer announcer,
        ILogger logger, bool noDelay, IReadOnlyList<JoinListener> joinListeners)
    {
        _listenSocket = listenSocket;
        _contextFactory = contextFactory;
        _announcer = announcer;
        _logger = logger;
        _noDelay = noDelay;
        _joinListeners = joinListeners;
        EndPoint = listenSocket.LocalEndPoint!;
    }

    public EndPoint EndPoint { get; }

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
                string id = $"mptcp-{Interlocked.Increment(ref _connectionCount)}";
                MptcpConnectionState state = _announcer.OnAccepted(socket, id);
                ConnectionContext context = _contextFactory.Create(socket);
                context.Features.Set<IMptcpConnectionFeature>(state);
                context.ConnectionClosed.UnsafeRegister(static s => ((MptcpConnectionState)s!).Announcer.OnClosed((MptcpConnectionState)s!), state);
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
