using MptcpAnycast.Interop;

namespace MptcpAnycast.Rescue.Bpf;

/// <summary>
/// The rescue programs on one interface's tcx ingress and egress hooks (Linux 6.6+: no qdisc, no classifier), attached
/// with <c>BPF_PROG_ATTACH</c> rather than a link so that they stay when the agent's process dies, as tc filters do.
/// An earlier agent's program is swapped for the new one in one step (<c>BPF_F_REPLACE</c>) when this process can open
/// it: from its pin (<see cref="RescuePins"/>, with a pin directory configured), or by id when this process has
/// CAP_SYS_ADMIN (then a program of the same name is taken for it). Otherwise the new program goes first, before any other tcx
/// program on the hook, and an earlier agent's program (known by the id it recorded, or not readable) stays after it
/// with a warning: it sees only what the new one passes. Taking it off by position instead (insert the new program
/// before it, then detach the one after the new) stopped all traffic through the new program in 2 of 3 lab runs on
/// Linux 6.18, so the agent does not do that. Each change names the hook revision it was decided on.
/// </summary>
internal sealed unsafe class TcxAttachment : TcAttachment
{
    /// <summary>How many programs on one hook are looked at; the kernel allows 64.</summary>
    private const int MaxListed = 64;

    /// <summary>How often a change is decided again when the hook changed between reading it and changing it.</summary>
    private const int Attempts = 3;

    private readonly int _ingressFd, _egressFd;
    private readonly RescuePins? _pins;
    private readonly List<string> _warnings;

    private TcxAttachment(int ifindex, int ingressFd, int egressFd, RescuePins? pins, List<string> warnings)
        : base(ifindex)
    {
        _ingressFd = ingressFd;
        _egressFd = egressFd;
        _pins = pins;
        _warnings = warnings;
    }

    public override string Kind => "tcx";

    public override IReadOnlyList<string> Warnings => _warnings;

    /// <summary>
    /// Attaches both programs, or returns null when the kernel has no tcx (before 6.6). <paramref name="earlier"/>: the
    /// ids of the programs an earlier agent on this interface recorded (0 when none). <paramref name="pins"/>: where
    /// an earlier agent pinned its programs and this one pins its own (null: no pins). <paramref name="beforeAttach"/>:
    /// called with the direction after a hook has been read and before it is changed (tests change the hook there).
    /// </summary>
    public static TcxAttachment? TryAttach(int ifindex, int ingressFd, int egressFd, (uint Ingress, uint Egress) earlier, RescuePins? pins,
        Action<bool>? beforeAttach = null)
    {
        if (Query(ifindex, ingress: true) is null)
        {
            return null;
        }

        var warnings = new List<string>();
        PlaceFromPin(ifindex, ingress: true, ingressFd, earlier.Ingress, pins, warnings, beforeAttach);
        try
        {
            PlaceFromPin(ifindex, ingress: false, egressFd, earlier.Egress, pins, warnings, beforeAttach);
        }
        catch
        {
            DetachOne(ifindex, ingress: true, ingressFd);
            throw;
        }

        if (pins is not null)
        {
            RescuePins.Pin(pins.Ingress, ingressFd, warnings);
            RescuePins.Pin(pins.Egress, egressFd, warnings);
        }

        // An earlier agent's filters at the rescue handle of a clsact qdisc would still see what these programs pass.
        ClsactAttachment.RemoveFilters(ifindex);
        return new TcxAttachment(ifindex, ingressFd, egressFd, pins, warnings);
    }

    /// <summary>Detaches this attachment's programs and removes their pins; what a later agent has replaced meanwhile is not touched.</summary>
    public override void Detach()
    {
        DetachOne(InterfaceIndex, ingress: true, _ingressFd);
        DetachOne(InterfaceIndex, ingress: false, _egressFd);
        if (_pins is not null)
        {
            RescuePins.Remove(_pins.Ingress, ProgramId(_ingressFd));
            RescuePins.Remove(_pins.Egress, ProgramId(_egressFd));
        }
    }

    private static void PlaceFromPin(int ifindex, bool ingress, int programFd, uint earlierId, RescuePins? pins, List<string> warnings,
        Action<bool>? beforeAttach)
    {
        int pinnedFd = pins is null ? -1 : RescuePins.Open(pins.PathOf(ingress), warnings);
        try
        {
            Place(ifindex, ingress, programFd, earlierId, pinnedFd, warnings, beforeAttach);
        }
        finally
        {
            if (pinnedFd >= 0)
            {
                Tmds.Linux.LibC.close(pinnedFd);
            }
        }
    }

    /// <summary>The ids of the programs on a tcx hook, first to last, with the hook's revision; null when the kernel has no tcx.</summary>
    internal static (uint[] Ids, ulong Revision)? Query(int ifindex, bool ingress)
    {
        uint* ids = stackalloc uint[MaxListed];
        var attr = new BpfSyscall.QueryAttr { target_ifindex = (uint)ifindex, attach_type = (uint)AttachType(ingress), prog_ids = (ulong)ids, count = MaxListed };
        int result = BpfSyscall.Query(&attr);
        if (result is -Errno.EINVAL or -Errno.EOPNOTSUPP)
        {
            return null; // an attach type the kernel does not know, or no bpf(2) number for this architecture
        }

        if (result < 0 && result != -Errno.ENOSPC)
        {
            throw new RescueDataplaneException($"cannot list the programs on the tcx {Direction(ingress)} of interface {ifindex}", -result);
        }

        return (new ReadOnlySpan<uint>(ids, (int)Math.Min(attr.count, MaxListed)).ToArray(), attr.revision);
    }

    /// <summary>
    /// Puts the new program on the hook: in place of its predecessor when this process can find it (the pinned program
    /// <paramref name="pinnedFd"/>, or -1; else by name), else first.
    /// </summary>
    private static void Place(int ifindex, bool ingress, int programFd, uint earlierId, int pinnedFd, List<string> warnings, Action<bool>? beforeAttach)
    {
        string? name = ProgramNameOf(programFd);
        // A pin of another kind of object, or of a program that is not the rescue one, is not taken for the predecessor.
        uint pinnedId = pinnedFd >= 0 && name is not null && ProgramNameOf(pinnedFd) == name ? ProgramId(pinnedFd) : 0;
        for (int attempt = 1; ; attempt++)
        {
            (uint[] ids, ulong revision) = Query(ifindex, ingress)
                ?? throw new RescueDataplaneException($"interface {ifindex} lost its tcx {Direction(ingress)} hook", 0);
            bool fromPin = pinnedId != 0 && ids.Contains(pinnedId);
            int predecessor = fromPin ? pinnedFd : -1;
            var unreadable = new List<uint>();
            foreach (uint id in fromPin ? [] : ids)
            {
                int fd = Libbpf.bpf_prog_get_fd_by_id(id);
                if (fd < 0)
                {
                    if (fd is -Errno.EPERM or -Errno.EACCES)
                    {
                        unreadable.Add(id); // opening a program by id needs CAP_SYS_ADMIN
                    }

                    continue; // or it went away meanwhile
                }

                if (predecessor < 0 && name is not null && ProgramNameOf(fd) == name)
                {
                    predecessor = fd;
                    continue;
                }

                Tmds.Linux.LibC.close(fd);
            }

            var attr = new BpfSyscall.AttachAttr
            {
                target_ifindex = (uint)ifindex,
                attach_bpf_fd = (uint)programFd,
                attach_type = (uint)AttachType(ingress),
                attach_flags = predecessor >= 0 ? BpfSyscall.BPF_F_REPLACE : BpfSyscall.BPF_F_BEFORE, // before every program
                replace_bpf_fd = predecessor >= 0 ? (uint)predecessor : 0,
                expected_revision = revision,
            };
            beforeAttach?.Invoke(ingress);
            int attached = BpfSyscall.Attach(&attr);
            if (predecessor >= 0 && !fromPin)
            {
                Tmds.Linux.LibC.close(predecessor);
            }

            if (attached >= 0)
            {
                if (predecessor < 0 && earlierId != 0 && ids.Contains(earlierId))
                {
                    warnings.Add($"the earlier rescue agent's program {earlierId} (its status file says) stays on the tcx {Direction(ingress)} of " +
                        $"interface {ifindex}, after this agent's: replacing it needs CAP_SYS_ADMIN; it sees only what this one passes, " +
                        "until the interface is recreated or an agent with CAP_SYS_ADMIN starts");
                }
                else if (predecessor < 0 && unreadable.Count > 0)
                {
                    warnings.Add($"the tcx {Direction(ingress)} of interface {ifindex} already holds program(s) {string.Join(", ", unreadable)}, " +
                        "which cannot be read without CAP_SYS_ADMIN; if one of them is an earlier rescue agent's, it stays, after this " +
                        "agent's, and sees only what this one passes");
                }

                return;
            }

            if (attached != -Errno.ESTALE || attempt == Attempts)
            {
                throw new RescueDataplaneException($"cannot attach the rescue program to the tcx {Direction(ingress)} of interface {ifindex}", -attached);
            }
        }
    }

    private static void DetachOne(int ifindex, bool ingress, int programFd)
    {
        var attr = new BpfSyscall.AttachAttr { target_ifindex = (uint)ifindex, attach_bpf_fd = (uint)programFd, attach_type = (uint)AttachType(ingress) };
        BpfSyscall.Detach(&attr); // replaced by a later agent, or the interface is gone: nothing to undo
    }

    private static int AttachType(bool ingress) => ingress ? BpfSyscall.BPF_TCX_INGRESS : BpfSyscall.BPF_TCX_EGRESS;

    private static string Direction(bool ingress) => ingress ? "ingress" : "egress";
}
