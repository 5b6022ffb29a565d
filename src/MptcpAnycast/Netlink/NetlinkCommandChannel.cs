using System.Net.Sockets;
using MptcpAnycast.Interop;

namespace MptcpAnycast.Netlink;

/// <summary>
/// Request/answer exchanges on one netlink socket, one at a time, on the caller's thread. The kernel handles a
/// generic-netlink request inside <c>send</c> and has queued its whole answer (for a dump, its first part) before
/// <c>send</c> returns, so the caller reads its own answer at once: no reader thread, no table of pending requests, and
/// the socket never holds more than one answer, so a burst of requests cannot overflow it. Each receive waits at most
/// <see cref="Timeout"/> (<c>SO_RCVTIMEO</c>), which bounds every exchange whatever the kernel does.
/// </summary>
internal sealed class NetlinkCommandChannel : IDisposable
{
    private const int ReceiveBufferSize = 64 * 1024;

    private readonly NetlinkSocket _socket;
    private readonly Lock _gate = new();
    private readonly byte[] _answerBuffer = new byte[ReceiveBufferSize]; // under _gate
    private uint _sequence; // under _gate
    private TimeSpan _timeout;
    private int _disposed;

    /// <summary>Takes ownership of <paramref name="socket"/>.</summary>
    public NetlinkCommandChannel(NetlinkSocket socket, TimeSpan timeout)
    {
        _socket = socket;
        _sequence = (uint)Environment.TickCount & 0x7fffffff;
        Timeout = timeout;
    }

    /// <summary>Writes one request into <paramref name="buffer"/> with <paramref name="sequence"/>; returns its length.</summary>
    public delegate int Encoder<TState>(Span<byte> buffer, uint sequence, TState state);

    /// <summary>How long one receive of the answer may wait (<c>SO_RCVTIMEO</c>); a request whose answer does not come fails with <c>ETIMEDOUT</c>.</summary>
    public TimeSpan Timeout
    {
        get => _timeout;
        set
        {
            int errno = NativeSocket.SetReceiveTimeout(_socket.Socket.SafeHandle, value);
            if (errno != 0)
            {
                throw new NetlinkException("setsockopt(SO_RCVTIMEO)", errno, explanation: "cannot set the command timeout");
            }

            _timeout = value;
        }
    }

    /// <summary>The largest request an encoder may write.</summary>
    public const int MaxRequestSize = 256;

    /// <summary>Sets the receive buffer (see <see cref="NetlinkSocket.SetReceiveBuffer"/>); returns 0 or the errno.</summary>
    public int SetReceiveBuffer(int bytes) => _socket.SetReceiveBuffer(bytes);

    /// <summary>
    /// Sends one request and reads its whole answer: the payloads of its data messages (none for a plain command),
    /// after the kernel's ACK or <c>NLMSG_DONE</c>. Messages with another sequence number (the late answer to a request
    /// that timed out) are skipped.
    /// </summary>
    /// <exception cref="NetlinkException">The kernel refused (its errno and text), no answer came in time (<c>ETIMEDOUT</c>),
    /// the answer was dropped (<c>ENOBUFS</c>), or it was malformed (<c>EBADMSG</c>).</exception>
    /// <exception cref="ObjectDisposedException">The channel was closed.</exception>
    public List<byte[]> Exchange<TState>(string operation, TState state, Encoder<TState> encode)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        lock (_gate)
        {
            try
            {
                uint sequence = ++_sequence;
                Span<byte> request = stackalloc byte[MaxRequestSize];
                int length = encode(request, sequence, state);
                SafeSocketHandle handle = _socket.Socket.SafeHandle;
                int sent = NativeSocket.Send(handle, request[..length]);
                if (sent < 0)
                {
                    throw new NetlinkException(operation, -sent);
                }

                var answer = new Answer(operation, sequence);
                while (!answer.IsComplete)
                {
                    int received = NativeSocket.Receive(handle, _answerBuffer);
                    if (received < 0)
                    {
                        throw -received switch
                        {
                            Errno.EAGAIN => new NetlinkException(operation, Errno.ETIMEDOUT, null,
                                $"no answer from the kernel within {Timeout.TotalSeconds:0.###} s"),
                            Errno.ENOBUFS => new NetlinkException(operation, Errno.ENOBUFS, null,
                                "the kernel's answer did not fit the socket's receive buffer and was dropped; the request may or may not have taken effect"),
                            _ => new NetlinkException(operation, -received),
                        };
                    }

                    answer.Read(_answerBuffer.AsSpan(0, received));
                }

                return answer.Result();
            }
            catch (ObjectDisposedException)
            {
                ObjectDisposedException.ThrowIf(true, this); // the socket was closed by Dispose
                throw;
            }
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _socket.Dispose();
        }
    }

    /// <summary>The answer to one request, as its datagrams are read: data messages, then an ACK, an error or NLMSG_DONE.</summary>
    private sealed class Answer(string operation, uint sequence)
    {
        private static readonly List<byte[]> NoData = [];
        private List<byte[]>? _data;
        private NetlinkException? _error;

        public bool IsComplete { get; private set; }

        public List<byte[]> Result() => _error is null ? _data ?? NoData : throw _error;

        public void Read(ReadOnlySpan<byte> datagram)
        {
            var reader = new NetlinkMessageReader(datagram);
            try
            {
                while (!IsComplete && reader.TryRead(out NetlinkMessage message))
                {
                    if (message.Sequence == sequence)
                    {
                        Accept(message);
                    }
                }
            }
            catch (NetlinkFormatException ex)
            {
                Complete(new NetlinkException(operation, Errno.EBADMSG, null, $"malformed reply: {ex.Message}", ex));
            }
        }

        private void Accept(NetlinkMessage message)
        {
            switch (message.Type)
            {
                case NetlinkConstants.NLMSG_ERROR:
                    NetlinkError error = NetlinkError.Parse(message.Payload, message.Flags);
                    Complete(error.Errno == 0 ? null : new NetlinkException(operation, error.Errno, error.Message));
                    break;
                case NetlinkConstants.NLMSG_DONE:
                    int errno = NetlinkError.ReadDoneErrno(message.Payload);
                    Complete(errno == 0 ? null : new NetlinkException(operation, errno));
                    break;
                case NetlinkConstants.NLMSG_NOOP or NetlinkConstants.NLMSG_OVERRUN:
                    break;
                default:
                    (_data ??= []).Add(message.Payload.ToArray());
                    break;
            }
        }

        private void Complete(NetlinkException? error)
        {
            _error = error;
            IsComplete = true;
        }
    }
}
