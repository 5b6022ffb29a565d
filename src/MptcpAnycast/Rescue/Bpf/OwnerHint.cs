using System.Numerics;
using MptcpAnycast.Interop;

namespace MptcpAnycast.Rescue.Bpf;

/// <summary>
/// Userspace's side of the program's owner hint (<c>rescue_owner_hint</c>): one bit per hash of a flow, set before
/// the flow's owner is written, so that the program reads the owner map before its socket lookup only for flows that
/// may have an owner. This class is the map's only writer: it keeps a copy of the bits, so marking a flow costs one
/// map write at most, and rebuilds the map from the owner map's keys once stale bits (of flows the LRU evicted or a
/// SYN forgot) fill an eighth of it. A bit that is wrongly set costs a local segment one owner-map miss; a bit that
/// is wrongly clear costs a tunnelled segment the socket lookup; neither changes a verdict.
/// </summary>
internal sealed unsafe class OwnerHint
{
    /// <summary>log2 of the number of bits: <c>OWNER_HINT_BITS_LOG2</c> in rescue.bpf.c.</summary>
    public const int BitsLog2 = 20;

    /// <summary>The map's entries, 64 bits each (128 KiB in all).</summary>
    public const int Words = 1 << (BitsLog2 - 6);

    /// <summary>The fill that makes a rebuild worth its walk of the owner map: 1 bit in 8.</summary>
    public const int RebuildAt = (1 << BitsLog2) / 8;

    private readonly int _hintFd, _ownersFd;
    private readonly ulong[] _words = new ulong[Words];
    private readonly Lock _gate = new();
    private int _set, _nextRebuild = RebuildAt;

    public OwnerHint(int hintFd, int ownersFd)
    {
        _hintFd = hintFd;
        _ownersFd = ownersFd;
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
    public int Rebuilds { get; private set; }

    /// <summary>Sets the bit of <paramref name="key"/> (call before the owner map gets the flow).</summary>
    public void Mark(in BpfFlowKey key)
    {
        uint bit = key.OwnerHintBit();
        lock (_gate)
        {
            if (_set >= _nextRebuild)
            {
                RebuildLocked();
            }

            uint word = bit >> 6;
            ulong mask = 1UL << (int)(bit & 63);
            if ((_words[word] & mask) != 0)
            {
                return;
            }

            ulong value = _words[word] | mask;
            Write(word, value);
            _words[word] = value;
            _set++;
        }
    }

    /// <summary>
    /// Makes the map hold exactly the bits of the owner map's flows (at load, for an owner map pinned by an earlier
    /// agent, and when stale bits pile up). Only the words that change are written.
    /// </summary>
    public void Rebuild()
    {
        lock (_gate)
        {
            RebuildLocked();
        }
    }

    private void RebuildLocked()
    {
        var wanted = new ulong[Words];
        BpfFlowKey key, next;
        BpfFlowKey* previous = null;
        while (Libbpf.bpf_map_get_next_key(_ownersFd, previous, &next) == 0)
        {
            key = next;
            previous = &key;
            uint bit = key.OwnerHintBit();
            wanted[bit >> 6] |= 1UL << (int)(bit & 63);
        }

        int set = 0;
        for (uint word = 0; word < Words; word++)
        {
            if (wanted[word] != _words[word])
            {
                Write(word, wanted[word]);
                _words[word] = wanted[word];
            }

            set += BitOperations.PopCount(wanted[word]);
        }

        _set = set;
        _nextRebuild = Math.Max(RebuildAt, 2 * set);
        Rebuilds++;
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
