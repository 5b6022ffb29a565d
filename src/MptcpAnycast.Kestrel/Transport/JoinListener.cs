using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using MptcpAnycast.Kestrel.Diagnostics;

namespace MptcpAnycast.Kestrel.Transport;

/// <summary>
/// An MPTCP listen socket on an announced unicast address and port that no Kestrel endpoint covers. The kernel
/// needs it to accept MP_JOINs there (joins never reach <c>accept()</c>). Ordinary connections to it are refused
/// (reset): the unicast address is for joins to existing connections, not a second way in past the anycast shield.
/// Shared by every Kestrel endpoint that announces it; closed when the last one unbinds.
/// </summary>
internal sealed class JoinListener
{
    private readonly Socket _socket;
    private readonly Action<JoinListener> _onLastRelease;
    private readonly ILogger _logger;
    private int _references = 1;

    public JoinListener(IPEndPoint endPoint, int backlog, ILogger logger, Action<JoinListener> onLastRelease)
    {
        _socket = MptcpSocket.CreateListener(endPoint, backlog);
        _logger = logger;
        _onLastRelease = onLastRelease;
        EndPoint = (IPEndPoint)_socket.LocalEndPoint!;
        MptcpAnycastLog.JoinListener(logger, EndPoint);
        _ = RefuseLoopAsync();
    }

    public IPEndPoint EndPoint { get; }

    public bool TryAddReference()
    {
        while (true)
        {
            int current = Volatile.Read(ref _references);
            if (current == 0)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref _references, current + 1, current) == current)
            {
                return true;
            }
        }
    }

    public void Release()
    {
        if (Interlocked.Decrement(ref _references) == 0)
        {
            _socket.Dispose();
            _onLastRelease(this);
        }
    }

    private async Task RefuseLoopAsync()
    {
        while (true)
        {
            Socket accepted;
            try
            {
                accepted = await _socket.AcceptAsync().ConfigureAwait(false);
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.OperationAborted)
            {
                return;
            }
            catch (SocketException)
            {
                MptcpAnycastLog.ConnectionReset(_logger, EndPoint);
                continue;
            }

            try
            {
                accepted.LingerState = new LingerOption(true, 0); // RST, no TIME_WAIT
            }
            catch (SocketException)
            {
            }

            accepted.Dispose();
        }
    }
}
