using System.Numerics;
using MptcpAnycast.Interop;

namespace MptcpAnycast.Rescue.Bpf;

/// <summary>
/// Userspace's side of the program's owner hint (<c>rescue_owner_hint</c>): one bit per hash of a flow, set before
/// the flow's owner is written, so that the program reads the owner map before its socket lookup only for flows that
/// may have an owner. This class is the only writer of the hint and of new owner entries, both under one lock: a
/// rebuild, which makes the hint exactly the bits of the owner map's flows, then never misses an entry being written,
/// and every entry this agent wrote has its bit set. That matters beyond speed: the program deletes an entry when a
/// SYN opens a local connection on its tuple only when the bit is set. It keeps a copy of the bits, so recording a
/// flow costs one hint write at most, and rebuilds once stale bits (of flows the LRU evicted or a SYN forgot) fill an
/// eighth of the hint. Such a rebuild runs in the background, since walking a full owner map takes a
/// tenth of a second or more: the flows recorded meanwhile keep their bits. A bit that is set without an entry costs
/// a local segment one owner-map miss. While no bit is set the program does not read the hint at all
/// (<c>owner_hint_active</c> in its configuration, which this class has set before the first bit and clears after the
/// last): the hint's words are read at random, a cache miss per segment on a busy host. Entries that no segment used for
/// longer than the agent's idle timeout are deleted (<see cref="ExpireIdle"/>), so that the owner map, and with it the
/// hint, empties once the rescued flows are gone.
/// </summary>
internal sealed unsafe class OwnerHint
{
    /// <summary>log2 of the number of bits: <c>OWNER_HINT_BITS_LOG2</c> in rescue.bpf.c.</summary>
    public const int BitsLog2 = 20;

    /// <summary>The map's entries, 64 bits each (128 KiB in all).</summary>
    public const int Words = 1 << (BitsLog2 - 6);

    /// <summary>The fill that makes a rebuild worth its walk of the owner map: 1 bit in 8.</summary>
    public const int RebuildAt = (1 << BitsLog2) / 8;

    private const int ENOENT = 2;
    private const uint WalkBatch = 4096;

    private readonly int _hintFd, _ownersFd, _ownerCapacity;
    private readonly Action<bool> _activeChanged;
    private readonly ulong[] _words = new ulong[Words];
    private readonly Lock _gate = new();
    private readonly Lock _walkGate = new();
    private int _set, _nextRebuild = RebuildAt;
    private bool _active;
    private List<uint>? _recordedDuringWalk;
    private Task? _background;

    /// <param name="hintFd">The hint map.</param>
    /// <param name="ownersFd">The owner map.</param>
    /// <param name="ownerCapacity">The owner map's size.</param>
    /// <param name="activeChanged">Writes the program's <c>owner_hint_active</c>: called with true before the first bit is
    /// set, with false after the last is cleared, under this class's lock (it must not call back into it).</param>
    public OwnerHint(int hintFd, int ownersFd, int ownerCapacity, Action<bool> activeChanged)
    {
        _hintFd = hintFd;
        _ownersFd = ownersFd;
        _ownerCapacity = ownerCapacity;
        _activeChanged = activeChanged;
    }

    /// <summary>Whether the program reads the hint (some bit is set).</summary>
    public bool Active
    {
        get
        {
            lock (_gate)
            {
                return _active;
            }
        }
    }

    /// <summary>How many bits are set now.</summary>
    public int BitsSet
    {
        get
        {
            lock (_gate)
            {
                return _set;
            }
        }
    }

    /// <summary>How many times the map was rebuilt from the owner map.</summary>
    public int Rebuilds
    {
        get
        {
            lock (_gate)
            {
                return _rebuilds;
            }
        }
    }

    private int _rebuilds;

    /// <summary>Sets the bit of <paramref name="key"/>, then writes <paramref name="owner"/> as its owner map entry.</summary>
    /// <exception cref="RescueDataplaneException">The kernel refused a write.</exception>
    public void Record(in BpfFlowKey key, in BpfOwner owner)
    {
        lock (_gate)
        {
            uint bit = key.OwnerHintBit();
            uint word = bit >> 6;
            ulong mask = 1UL << (int)(bit & 63);
            if ((_words[word] & mask) == 0)
            {
                SetActiveLocked(true);
                ulong value = _words[word] | mask;
                Write(word, value);
                _words[word] = value;
                _set++;
            }

            _recordedDuringWalk?.Add(bit);
            fixed (BpfFlowKey* k = &key)
            fixed (BpfOwner* v = &owner)
            {
                int result = Libbpf.bpf_map_update_elem(_ownersFd, k, v, Libbpf.BPF_ANY);
                if (result < 0)
                {
                    throw new RescueDataplaneException($"cannot record the owner of {key.ToFlow()}", -result);
                }
            }

            if (_set >= _nextRebuild && _background is null)
            {
                _background = Task.Run(RebuildInBackground);
            }
        }
    }

    /// <summary>Waits for a rebuild running in the background (before the maps are closed).</summary>
    public void WaitForRebuild()
    {
        Task? background;
        lock (_gate)
        {
            background = _background;
        }

        background?.Wait(TimeSpan.FromSeconds(10));
    }

    /// <summary>
    /// Makes the map hold exactly the bits of the owner map's flows (at load, for an owner map pinned by an earlier
    /// agent, and when stale bits pile up); false, with the hint unchanged, when the owner map could not be read to
    /// the end. Only the words that change are written.
    /// </summary>
    public bool Rebuild()
    {
        lock (_walkGate)
        {
            lock (_gate)
            {
                _recordedDuringWalk = [];
            }

            var wanted = new ulong[Words];
            bool walked = TryCollect(wanted);
            lock (_gate)
            {
                List<uint> recorded = _recordedDuringWalk!;
                _recordedDuringWalk = null;
                // A hint without the bit of a live entry would stop the program from forgetting that entry at a SYN, so
                // a walk that failed midway changes nothing, and the flows recorded during the walk keep their bits.
                if (!walked)
                {
                    return false;
                }

                foreach (uint bit in recorded)
                {
                    wanted[bit >> 6] |= 1UL << (int)(bit & 63);
                }

                ApplyLocked(wanted);
                return true;
            }
        }
    }

    private void RebuildInBackground()
    {
        bool rebuilt = false;
        try
        {
            rebuilt = Rebuild();
        }
        catch (RescueDataplaneException)
        {
            // A word that could not be written keeps its old bits: still a superset of the owner map's flows.
        }
        finally
        {
            lock (_gate)
            {
                if (!rebuilt)
                {
                    _nextRebuild = _set + RebuildAt;
                }

                _background = null;
            }
        }
    }

    private void ApplyLocked(ulong[] wanted)
    {
        int set = 0;
        foreach (ulong bits in wanted)
        {
            set += BitOperations.PopCount(bits);
        }

        if (set > 0)
        {
            SetActiveLocked(true);
        }

        for (uint word = 0; word < Words; word++)
        {
            if (wanted[word] != _words[word])
            {
                // A live entry's bit is set in the old word and in the new one, so no read of the program sees it clear.
                Write(word, wanted[word]);
                _words[word] = wanted[word];
            }
        }

        if (set == 0)
        {
            SetActiveLocked(false);
        }

        _set = set;
        _nextRebuild = Math.Max(RebuildAt, 2 * set);
        _rebuilds++;
    }

    private void SetActiveLocked(bool active)
    {
        if (_active != active)
        {
            _activeChanged(active);
            _active = active;
        }
    }

    /// <summary>
    /// Deletes the owner entries that no segment has used for more than <paramref name="idleSeconds"/> by
    /// <paramref name="nowSeconds"/> (CLOCK_MONOTONIC seconds, as <c>used_seconds</c> holds them), and rebuilds the hint
    /// when that leaves the owner map empty, which switches the program's reads of it off. An entry written or used
    /// again between the walk and its deletion is kept. Returns how many entries were deleted, or -1 when the owner
    /// map could not be read to the end (nothing is deleted then).
    /// </summary>
    public int ExpireIdle(uint nowSeconds, uint idleSeconds)
    {
        var idle = new List<BpfFlowKey>();
        int held = 0;
        bool walked = TryWalk((keys, values) =>
        {
            held += keys.Length;
            for (int i = 0; i < keys.Length; i++)
            {
                if (IsIdle(nowSeconds, values[i].UsedSeconds, idleSeconds))
                {
                    idle.Add(keys[i]);
                }
            }
        });
        if (!walked)
        {
            return -1;
        }

        int deleted = 0;
        // In slices, so that recording a new owner never waits long behind a large expiry.
        for (int start = 0; start < idle.Count; start += 256)
        {
            lock (_gate)
            {
                for (int i = start; i < idle.Count && i < start + 256; i++)
                {
                    BpfFlowKey key = idle[i];
                    BpfOwner value;
                    if (Libbpf.bpf_map_lookup_elem(_ownersFd, &key, &value) == 0 && IsIdle(nowSeconds, value.UsedSeconds, idleSeconds)
                        && Libbpf.bpf_map_delete_elem(_ownersFd, &key) == 0)
                    {
                        deleted++;
                    }
                }
            }
        }

        // Nothing left (or only the stale bits of entries the LRU evicted or a SYN forgot): the bits can all go.
        if (deleted == held && BitsSet > 0)
        {
            Rebuild();
        }

        return deleted;
    }

    /// <summary>Whether an entry last used at <paramref name="used"/> has been idle longer than <paramref name="idle"/>; one stamped after <paramref name="now"/> (another process's later clock read) is not.</summary>
    internal static bool IsIdle(uint now, uint used, uint idle) => unchecked((int)(now - used)) > (long)idle;

    private delegate void BatchVisitor(ReadOnlySpan<BpfFlowKey> keys, ReadOnlySpan<BpfOwner> values);

    private bool TryCollect(ulong[] wanted) => TryWalk((keys, _) =>
    {
        foreach (BpfFlowKey key in keys)
        {
            uint bit = key.OwnerHintBit();
            wanted[bit >> 6] |= 1UL << (int)(bit & 63);
        }
    });

    /// <summary>
    /// The owner map's entries in batches (<c>BPF_MAP_LOOKUP_BATCH</c>, which LRU hash maps have had since Linux 5.6): a
    /// few system calls for a full map, where <c>get_next_key</c> would take one per flow. False when a call failed
    /// midway.
    /// </summary>
    private bool TryWalk(BatchVisitor visit)
    {
        var keys = new BpfFlowKey[WalkBatch];
        var values = new BpfOwner[WalkBatch];
        ulong token = 0;
        bool first = true;
        fixed (BpfFlowKey* k = keys)
        fixed (BpfOwner* v = values)
        {
            for (int calls = 0; calls <= _ownerCapacity / (int)WalkBatch + 2; calls++)
            {
                uint count = WalkBatch;
                int result = Libbpf.bpf_map_lookup_batch(_ownersFd, first ? null : &token, &token, k, v, &count, null);
                if (result < 0 && result != -ENOENT)
                {
                    return false;
                }

                visit(keys.AsSpan(0, (int)count), values.AsSpan(0, (int)count));
                if (result == -ENOENT)
                {
                    return true;
                }

                first = false;
            }
        }

        return false;
    }

    private void Write(uint word, ulong value)
    {
        int result = Libbpf.bpf_map_update_elem(_hintFd, &word, &value, Libbpf.BPF_ANY);
        if (result < 0)
        {
            throw new RescueDataplaneException($"cannot write word {word} of the owner hint", -result);
        }
    }
}
