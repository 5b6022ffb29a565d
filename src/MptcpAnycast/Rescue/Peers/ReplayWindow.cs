namespace MptcpAnycast.Rescue.Peers;

/// <summary>What <see cref="ReplayWindow.TryAccept"/> decided about a sequence number.</summary>
internal enum ReplayCheck
{
    Accepted,
    Replayed,
    BehindWindow,
}

/// <summary>
/// The sequence numbers already accepted from one peer, IPsec style (RFC 4303 §3.4.3): the highest one and a bitmap
/// of the <see cref="Width"/> below it. A number above the highest moves the window; one inside it is accepted once;
/// one below it is rejected, as it cannot be told from a replay. Only authentic messages reach the window (the MAC
/// is checked first), so nobody but the peer can move it. Thread-safe.
/// </summary>
/// <remarks>
/// A sender numbers its messages to a peer from the Unix time in microseconds at its start, plus one per message, so
/// a restarted sender starts above everything it sent before (it would have to have sent more than one message per
/// microsecond of uptime to catch up with the clock) and the receiver needs no state across restarts.
/// </remarks>
internal sealed class ReplayWindow
{
    /// <summary>How far behind the highest accepted number a late message may be: reordering this deep is tolerated.</summary>
    public const int Width = 128;

    private readonly Lock _gate = new();
    private ulong _highest;
    private UInt128 _seen; // bit i: _highest - i was accepted
    private bool _started;

    /// <summary>The highest number accepted so far (0 before the first).</summary>
    public ulong Highest
    {
        get
        {
            lock (_gate)
            {
                return _highest;
            }
        }
    }

    /// <summary>Accepts <paramref name="sequence"/> if it was not accepted before and is not behind the window; records it.</summary>
    public ReplayCheck TryAccept(ulong sequence)
    {
        lock (_gate)
        {
            if (!_started || sequence > _highest)
            {
                ulong ahead = _started ? sequence - _highest : Width;
                _seen = ahead >= Width ? UInt128.One : (_seen << (int)ahead) | UInt128.One;
                _highest = sequence;
                _started = true;
                return ReplayCheck.Accepted;
            }

            ulong behind = _highest - sequence;
            if (behind >= Width)
            {
                return ReplayCheck.BehindWindow;
            }

            UInt128 bit = UInt128.One << (int)behind;
            if ((_seen & bit) != UInt128.Zero)
            {
                return ReplayCheck.Replayed;
            }

            _seen |= bit;
            return ReplayCheck.Accepted;
        }
    }
}
