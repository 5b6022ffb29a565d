using MptcpAnycast.Interop;

namespace MptcpAnycast.Rescue.Bpf;

/// <summary>
/// The rescue programs on one interface's tcx ingress and egress hooks (Linux 6.6+: no qdisc, no classifier), attached
/// with <c>BPF_PROG_ATTACH</c> rather than a link so that they stay when the agent's process dies, as tc filters do.
/// An earlier agent's programs on the hooks are replaced in two phases: both new programs go in first, each right
/// before its predecessor, then both predecessors come off; a failure in the first phase takes the new ones off again
/// and leaves the hooks as they were. A predecessor is found by its name when this process may open programs by id
/// (CAP_SYS_ADMIN), else by the id that agent recorded; with neither, the new program goes first on its hook.
/// Each change names the hook revision it was decided on, so a change made meanwhile by someone else makes it fail
/// (and be decided again) instead of hitting the wrong program.
/// </summary>
internal sealed unsafe class TcxAttachment : TcAttachment
{
    /// <summary>How many programs on one hook are looked at; the kernel allows 64.</summary>
    private const int MaxListed = 64;

    /// <summary>How often a change is decided again when the hook changed between reading it and changing it.</summary>
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
        Predecessor ingress = Place(ifindex, ingress: true, ingressFd, earlier.Ingress, warnings);
        Predecessor egress;
        try
        {
            egress = Place(ifindex, ingress: false, egressFd, earlier.Egress, warnings);
        }
        catch
        {
            DetachOne(ifindex, ingress: true, ingressFd);
            ingress.Close();
            throw;
        }

        TakeOff(ifindex, ingress: true, ingressFd, ingress, warnings);
        TakeOff(ifindex, ingress: false, egressFd, egress, warnings);
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
            return null; // an attach type the kernel does not know, or no bpf(2) number for this architecture
        }

        if (result < 0 && result != -Errno.ENOSPC)
        {
            throw new RescueDataplaneException($"cannot list the programs on the tcx {Direction(ingress)} of interface {ifindex}", -result);
        }

        return (new ReadOnlySpan<uint>(ids, (int)Math.Min(attr.count, MaxListed)).ToArray(), attr.revision);
    }

    /// <summary>Puts the new program on the hook, right before its predecessor when there is one, and says which that is.</summary>
    private static Predecessor Place(int ifindex, bool ingress, int programFd, uint earlierId, List<string> warnings)
    {
        string? name = ProgramNameOf(programFd);
        for (int attempt = 1; ; attempt++)
        {
            (uint[] ids, ulong revision) = Query(ifindex, ingress)
                ?? throw new RescueDataplaneException($"interface {ifindex} lost its tcx {Direction(ingress)} hook", 0);
            int sameName = -1;
            var unreadable = new List<uint>();
            foreach (uint id in ids)
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

                if (sameName < 0 && name is not null && ProgramNameOf(fd) == name)
                {
                    sameName = fd;
                    continue;
                }

                Tmds.Linux.LibC.close(fd);
            }

            var predecessor = sameName >= 0 ? new Predecessor(sameName, 0)
                : earlierId != 0 && ids.Contains(earlierId) ? new Predecessor(-1, earlierId)
                : new Predecessor(-1, 0);
            var attr = new BpfSyscall.AttachAttr
            {
                target_ifindex = (uint)ifindex,
                attach_bpf_fd = (uint)programFd,
                attach_type = (uint)AttachType(ingress),
                attach_flags = BpfSyscall.BPF_F_BEFORE | (predecessor.Fd < 0 && predecessor.Id != 0 ? BpfSyscall.BPF_F_ID : 0),
                relative_fd_or_id = predecessor.Fd >= 0 ? (uint)predecessor.Fd : predecessor.Id, // 0: before every program
                expected_revision = revision,
            };
            int attached = BpfSyscall.Attach(&attr);
            if (attached >= 0)
            {
                if (predecessor.Fd < 0 && predecessor.Id == 0 && earlierId == 0 && unreadable.Count > 0)
                {
                    warnings.Add($"the tcx {Direction(ingress)} of interface {ifindex} already holds program(s) {string.Join(", ", unreadable)}, " +
                        "which cannot be read without CAP_SYS_ADMIN, and no earlier agent's ids were found in the status directory; if one of " +
                        "them is an earlier rescue agent's, it now runs after this agent's and sees only what this one passes, until it is " +
                        "detached or the interface is recreated");
                }

                return predecessor;
            }

            predecessor.Close();
            if (attached != -Errno.ESTALE || attempt == Attempts)
            {
                throw new RescueDataplaneException($"cannot attach the rescue program to the tcx {Direction(ingress)} of interface {ifindex}", -attached);
            }
        }
    }

    /// <summary>Takes the predecessor that <see cref="Place"/> put the new program before off the hook.</summary>
    private static void TakeOff(int ifindex, bool ingress, int programFd, Predecessor predecessor, List<string> warnings)
    {
        int result = 0;
        if (predecessor.Fd >= 0)
        {
            var exact = new BpfSyscall.AttachAttr { target_ifindex = (uint)ifindex, attach_bpf_fd = (uint)predecessor.Fd, attach_type = (uint)AttachType(ingress) };
            result = BpfSyscall.Detach(&exact);
            uint id = ProgramId(predecessor.Fd);
            predecessor.Close();
            if (result < 0 && result != -Errno.ENOENT)
            {
                warnings.Add(StaysWarning(ifindex, ingress, id, result));
            }

            return;
        }

        if (predecessor.Id == 0)
        {
            return;
        }

        // Without a descriptor of it: the program right after the new one, as long as the hook says that is still it.
        uint ours = ProgramId(programFd);
        for (int attempt = 1; attempt <= Attempts; attempt++)
        {
            (uint[] ids, ulong revision) = Query(ifindex, ingress) ?? ([], 0);
            int at = Array.IndexOf(ids, ours);
            if (!ids.Contains(predecessor.Id))
            {
                return; // gone meanwhile
            }

            if (at < 0 || at + 1 >= ids.Length || ids[at + 1] != predecessor.Id)
            {
                warnings.Add($"the earlier rescue agent's program {predecessor.Id} on the tcx {Direction(ingress)} of interface {ifindex} is no " +
                    "longer right after this agent's (someone changed the hook), so it stays, after this one; it sees only what this one passes");
                return;
            }

            var after = new BpfSyscall.AttachAttr
            {
                target_ifindex = (uint)ifindex,
                attach_type = (uint)AttachType(ingress),
                attach_flags = BpfSyscall.BPF_F_AFTER,
                relative_fd_or_id = (uint)programFd,
                expected_revision = revision,
            };
            result = BpfSyscall.Detach(&after);
            if (result >= 0 || result != -Errno.ESTALE)
            {
                break;
            }
        }

        if (result < 0)
        {
            warnings.Add(StaysWarning(ifindex, ingress, predecessor.Id, result));
        }
    }

    private static string StaysWarning(int ifindex, bool ingress, uint id, int result) =>
        $"the earlier rescue agent's program {id} stays on the tcx {Direction(ingress)} of interface {ifindex}, after this agent's " +
        $"(taking it off failed: {NativeSocket.DescribeErrno(-result)}, errno {-result}); it sees only what this one passes";

    private static void DetachOne(int ifindex, bool ingress, int programFd)
    {
        var attr = new BpfSyscall.AttachAttr { target_ifindex = (uint)ifindex, attach_bpf_fd = (uint)programFd, attach_type = (uint)AttachType(ingress) };
        BpfSyscall.Detach(&attr); // replaced by a later agent, or the interface is gone: nothing to undo
    }

    private static int AttachType(bool ingress) => ingress ? BpfSyscall.BPF_TCX_INGRESS : BpfSyscall.BPF_TCX_EGRESS;

    private static string Direction(bool ingress) => ingress ? "ingress" : "egress";

    /// <summary>An earlier agent's program on a hook: a descriptor of it (found by name), or its recorded id, or neither.</summary>
    private readonly record struct Predecessor(int Fd, uint Id)
    {
        public void Close()
        {
            if (Fd >= 0)
            {
                Tmds.Linux.LibC.close(Fd);
            }
        }
    }
}
