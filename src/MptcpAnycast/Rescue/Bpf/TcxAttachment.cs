using MptcpAnycast.Interop;

namespace MptcpAnycast.Rescue.Bpf;

/// <summary>
/// The rescue programs on one interface's tcx ingress and egress hooks (Linux 6.6+: no qdisc, no classifier), attached
/// with <c>BPF_PROG_ATTACH</c> rather than a link so that they stay when the agent's process dies, as tc filters do.
/// An earlier agent's program on the hook is replaced: found by its name when this process may open other programs
/// (CAP_SYS_ADMIN) and swapped in one step, else found by the id that agent recorded, the new program put right before
/// it and the old one then taken off (each step checked against the hook's revision, so nothing else moves meanwhile).
/// Otherwise the program goes first, before any other tcx program on the hook.
/// </summary>
internal sealed unsafe class TcxAttachment : TcAttachment
{
    /// <summary>How many programs on one hook are looked at; the kernel allows 64.</summary>
    private const int MaxListed = 64;

    /// <summary>How often a change is tried again when the hook changed between reading it and changing it.</summary>
    private const int Attempts = 3;

    private readonly int _ingressFd, _egressFd;
    private readonly List<string> _warnings;

    private TcxAttachment(int ifindex, int ingressFd, int egressFd, List<string> warnings)
        : base(ifindex)
    {
        _ingressFd = ingressFd;
        _egressFd = egressFd;
        _warnings = warnings;
    }

    public override string Kind => "tcx";

    public override IReadOnlyList<string> Warnings => _warnings;

    /// <summary>
    /// Attaches both programs, or returns null when the kernel has no tcx (before 6.6). <paramref name="earlier"/>: the
    /// ids of the programs an earlier agent on this interface recorded (0 when none).
    /// </summary>
    public static TcxAttachment? TryAttach(int ifindex, int ingressFd, int egressFd, (uint Ingress, uint Egress) earlier)
    {
        if (Query(ifindex, ingress: true) is null)
        {
            return null;
        }

        var warnings = new List<string>();
        AttachOne(ifindex, ingress: true, ingressFd, earlier.Ingress, warnings);
        try
        {
            AttachOne(ifindex, ingress: false, egressFd, earlier.Egress, warnings);
        }
        catch
        {
            DetachOne(ifindex, ingress: true, ingressFd);
            throw;
        }

        // An earlier agent's filters at the rescue handle of a clsact qdisc would still see what these programs pass.
        ClsactAttachment.RemoveFilters(ifindex);
        return new TcxAttachment(ifindex, ingressFd, egressFd, warnings);
    }

    /// <summary>Detaches this attachment's programs; one that a later agent has replaced meanwhile is not touched.</summary>
    public override void Detach()
    {
        DetachOne(InterfaceIndex, ingress: true, _ingressFd);
        DetachOne(InterfaceIndex, ingress: false, _egressFd);
    }

    /// <summary>The ids of the programs on a tcx hook, first to last, with the hook's revision; null when the kernel has no tcx.</summary>
    internal static (uint[] Ids, ulong Revision)? Query(int ifindex, bool ingress)
    {
        uint* ids = stackalloc uint[MaxListed];
        var attr = new BpfSyscall.QueryAttr { target_ifindex = (uint)ifindex, attach_type = (uint)AttachType(ingress), prog_ids = (ulong)ids, count = MaxListed };
        int result = BpfSyscall.Query(&attr);
        if (result is -Errno.EINVAL or -Errno.EOPNOTSUPP)
        {
            return null; // an attach type the kernel does not know
        }

        if (result < 0 && result != -Errno.ENOSPC)
        {
            throw new RescueDataplaneException($"cannot list the programs on the tcx {Direction(ingress)} of interface {ifindex}", -result);
        }

        return (new ReadOnlySpan<uint>(ids, (int)Math.Min(attr.count, MaxListed)).ToArray(), attr.revision);
    }

    private static void AttachOne(int ifindex, bool ingress, int programFd, uint earlierId, List<string> warnings)
    {
        for (int attempt = 1; ; attempt++)
        {
            int result = TryAttachOne(ifindex, ingress, programFd, earlierId, warnings);
            if (result >= 0)
            {
                return;
            }

            if (result != -Errno.ESTALE || attempt == Attempts)
            {
                throw new RescueDataplaneException($"cannot attach the rescue program to the tcx {Direction(ingress)} of interface {ifindex}", -result);
            }
        }
    }

    private static int TryAttachOne(int ifindex, bool ingress, int programFd, uint earlierId, List<string> warnings)
    {
        (uint[] ids, ulong revision) = Query(ifindex, ingress) ?? throw new RescueDataplaneException($"interface {ifindex} lost its tcx {Direction(ingress)} hook", 0);
        string? name = ProgramNameOf(programFd);
        int replaced = -1;
        var unreadable = new List<uint>();
        foreach (uint id in ids)
        {
            int fd = Libbpf.bpf_prog_get_fd_by_id(id);
            if (fd < 0)
            {
                if (fd is -Errno.EPERM or -Errno.EACCES)
                {
                    unreadable.Add(id); // opening another process's program needs CAP_SYS_ADMIN
                }

                continue; // or it went away meanwhile
            }

            if (replaced < 0 && name is not null && ProgramNameOf(fd) == name)
            {
                replaced = fd;
                continue;
            }

            Tmds.Linux.LibC.close(fd);
        }

        var attr = new BpfSyscall.AttachAttr
        {
            target_ifindex = (uint)ifindex,
            attach_bpf_fd = (uint)programFd,
            attach_type = (uint)AttachType(ingress),
            expected_revision = revision,
        };
        if (replaced >= 0)
        {
            attr.attach_flags = BpfSyscall.BPF_F_REPLACE;
            attr.replace_bpf_fd = (uint)replaced;
            int swapped = BpfSyscall.Attach(&attr);
            Tmds.Linux.LibC.close(replaced);
            return swapped;
        }

        if (earlierId != 0 && ids.Contains(earlierId))
        {
            attr.attach_flags = BpfSyscall.BPF_F_BEFORE | BpfSyscall.BPF_F_ID;
            attr.relative_fd_or_id = earlierId;
            int placed = BpfSyscall.Attach(&attr);
            if (placed < 0)
            {
                return placed;
            }

            // The program right after the new one is the earlier agent's, unless the hook changed since (the revision says).
            var off = new BpfSyscall.AttachAttr
            {
                target_ifindex = (uint)ifindex,
                attach_type = (uint)AttachType(ingress),
                attach_flags = BpfSyscall.BPF_F_AFTER,
                relative_fd_or_id = (uint)programFd,
                expected_revision = revision + 1,
            };
            int detached = BpfSyscall.Detach(&off);
            if (detached < 0)
            {
                warnings.Add($"the earlier rescue agent's program {earlierId} stays on the tcx {Direction(ingress)} of interface {ifindex}, " +
                    $"after this agent's (taking it off failed: {NativeSocket.DescribeErrno(-detached)}, errno {-detached}); it sees only what this one passes");
            }

            return 0;
        }

        attr.attach_flags = BpfSyscall.BPF_F_BEFORE;
        int attached = BpfSyscall.Attach(&attr);
        if (attached >= 0 && unreadable.Count > 0)
        {
            warnings.Add($"the tcx {Direction(ingress)} of interface {ifindex} already holds program(s) {string.Join(", ", unreadable)}, " +
                "which cannot be read without CAP_SYS_ADMIN and which no earlier agent recorded in the status directory; if one is an " +
                "earlier rescue agent's, it now runs after this agent's and sees only what this one passes, until it is detached or the interface is recreated");
        }

        return attached;
    }

    private static void DetachOne(int ifindex, bool ingress, int programFd)
    {
        var attr = new BpfSyscall.AttachAttr { target_ifindex = (uint)ifindex, attach_bpf_fd = (uint)programFd, attach_type = (uint)AttachType(ingress) };
        BpfSyscall.Detach(&attr); // replaced by a later agent, or the interface is gone: nothing to undo
    }

    private static int AttachType(bool ingress) => ingress ? BpfSyscall.BPF_TCX_INGRESS : BpfSyscall.BPF_TCX_EGRESS;

    private static string Direction(bool ingress) => ingress ? "ingress" : "egress";
}
