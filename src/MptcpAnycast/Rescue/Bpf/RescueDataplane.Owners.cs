using System.Net;
using MptcpAnycast.Interop;

namespace MptcpAnycast.Rescue.Bpf;

// The owner map: entries written after a lookup (with their hint bits), read for status, expired when idle.
internal sealed unsafe partial class RescueDataplane
{
    /// <summary>
    /// Advances the program's clock (what a tunnelled segment stamps on its owner entry) and deletes the owner entries no
    /// segment used for longer than <paramref name="idleTimeout"/>; when none is left, the program stops reading the owner
    /// hint. Returns how many entries went (-1: the owner map could not be read to the end, nothing deleted).
    /// </summary>
    public int ExpireIdleOwners(TimeSpan idleTimeout) => ExpireIdleOwners(idleTimeout, NowSeconds());

    /// <summary><see cref="ExpireIdleOwners(TimeSpan)"/> as if the clock read <paramref name="now"/> (tests move it on).</summary>
    internal int ExpireIdleOwners(TimeSpan idleTimeout, uint now)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(idleTimeout, TimeSpan.FromSeconds(1));
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            lock (_configWrite)
            {
                if (now != _nowSeconds)
                {
                    _nowSeconds = now;
                    WriteConfig();
                }
            }

            return _hint.ExpireIdle(now, (uint)Math.Min(idleTimeout.TotalSeconds, uint.MaxValue / 2));
        }
    }

    /// <summary>Records that <paramref name="owner"/> (a peer's unicast address) owns <paramref name="flow"/>.</summary>
    public void SetOwner(TcpFlow flow, IPAddress owner)
    {
        BpfFlowKey key = BpfFlowKey.From(flow);
        var value = new BpfOwner { Family = BpfAddress.FamilyOf(owner), UsedSeconds = NowSeconds(), LearnedNanoseconds = MonotonicNanoseconds() };
        BpfAddress.Write(owner, new Span<byte>(value.Address, 16));
        _hint.Record(key, value);
    }

    /// <summary>The owner the map holds for <paramref name="flow"/>, or null.</summary>
    public IPAddress? GetOwner(TcpFlow flow)
    {
        BpfFlowKey key = BpfFlowKey.From(flow);
        BpfOwner value;
        return Libbpf.bpf_map_lookup_elem(_ownersFd, &key, &value) == 0
            ? BpfAddress.Read(value.Family, new ReadOnlySpan<byte>(value.Address, 16))
            : null;
    }

    /// <summary>Forgets the owner of <paramref name="flow"/>; false when the map had none.</summary>
    public bool RemoveOwner(TcpFlow flow)
    {
        BpfFlowKey key = BpfFlowKey.From(flow);
        return Libbpf.bpf_map_delete_elem(_ownersFd, &key) == 0;
    }

    /// <summary>Every flow in the owner map with its owner (a walk of the map: for status, not for the data path).</summary>
    public List<(TcpFlow Flow, IPAddress Owner)> ListOwners(int max = int.MaxValue)
    {
        var owners = new List<(TcpFlow, IPAddress)>();
        BpfFlowKey key, next;
        BpfFlowKey* previous = null;
        while (owners.Count < max && Libbpf.bpf_map_get_next_key(_ownersFd, previous, &next) == 0)
        {
            key = next;
            previous = &key;
            BpfOwner value;
            if (Libbpf.bpf_map_lookup_elem(_ownersFd, &key, &value) == 0 && key.ToFlow() is TcpFlow flow)
            {
                owners.Add((flow, BpfAddress.Read(value.Family, new ReadOnlySpan<byte>(value.Address, 16))));
            }
        }

        return owners;
    }
}
