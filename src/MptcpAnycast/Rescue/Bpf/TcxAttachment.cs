using MptcpAnycast.Interop;

namespace MptcpAnycast.Rescue.Bpf;

/// <summary>
/// The rescue programs on one interface's tcx ingress and egress hooks (Linux 6.6+: no qdisc, no classifier), attached
/// with <c>BPF_PROG_ATTACH</c> rather than a link so that they stay when the agent's process dies, as tc filters do.
/// A program of the same name already there (an earlier agent's) is replaced in one step; otherwise the program goes
/// first, before any other tcx program on the hook.
/// </summary>
internal sealed unsafe class TcxAttachment : TcAttachment
{
    /// <summary>How many programs on one hook are looked at; the kernel allows 64.</summary>
    private const int MaxListed = 64;

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

    /// <summary>Attaches both programs, or returns null when the kernel has no tcx (before 6.6).</summary>
    public static TcxAttachment? TryAttach(int ifindex, int ingressFd, int egressFd)
    {
        if (Query(ifindex, ingress: true) is null)
        {
            return null;
        }

        var warnings = new List<string>();
        AttachOne(ifindex, ingress: true, ingressFd, warnings);
        try
        {
            AttachOne(ifindex, ingress: false, egressFd, warnings);
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

    /// <summary>The ids of the programs on a tcx hook, first to last, or null when the kernel has no tcx.</summary>
    internal static uint[]? Query(int ifindex, bool ingress)
    {
        uint* ids = stackalloc uint[MaxListed];
        var opts = new Libbpf.ProgQueryOpts { sz = (nuint)sizeof(Libbpf.ProgQueryOpts), prog_ids = ids, prog_cnt = MaxListed };
        int result = Libbpf.bpf_prog_query_opts(ifindex, AttachType(ingress), &opts);
        if (result == -Errno.EINVAL)
        {
            return null; // an attach type the kernel does not know
        }

        if (result < 0 && result != -Errno.ENOSPC)
        {
            throw new RescueDataplaneException($"cannot list the programs on the tcx {Direction(ingress)} of interface {ifindex}", -result);
        }

        return new ReadOnlySpan<uint>(ids, (int)Math.Min(opts.prog_cnt, MaxListed)).ToArray();
    }

    private static void AttachOne(int ifindex, bool ingress, int programFd, List<string> warnings)
    {
        string? name = ProgramNameOf(programFd);
        int replaced = -1;
        var unreadable = new List<uint>();
        foreach (uint id in Query(ifindex, ingress) ?? [])
        {
            int fd = Libbpf.bpf_prog_get_fd_by_id(id);
            if (fd < 0)
            {
                if (fd is -Errno.EPERM or -Errno.EACCES)
                {
                    unreadable.Add(id); // reading another program needs CAP_SYS_ADMIN
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

        try
        {
            var opts = new Libbpf.ProgAttachOpts
            {
                sz = (nuint)sizeof(Libbpf.ProgAttachOpts),
                flags = replaced >= 0 ? Libbpf.BPF_F_REPLACE : Libbpf.BPF_F_BEFORE,
                replace_prog_fd = Math.Max(replaced, 0),
            };
            int attached = Libbpf.bpf_prog_attach_opts(programFd, ifindex, AttachType(ingress), &opts);
            if (attached < 0)
            {
                throw new RescueDataplaneException($"cannot attach the rescue program to the tcx {Direction(ingress)} of interface {ifindex}", -attached);
            }
        }
        finally
        {
            if (replaced >= 0)
            {
                Tmds.Linux.LibC.close(replaced);
            }
        }

        if (replaced < 0 && unreadable.Count > 0)
        {
            warnings.Add($"the tcx {Direction(ingress)} of interface {ifindex} already holds program(s) {string.Join(", ", unreadable)}, " +
                "which cannot be read without CAP_SYS_ADMIN; if one is an earlier rescue agent's (killed, not stopped), it now runs " +
                "after this agent's and sees what this one passes, until it is detached or the interface is recreated");
        }
    }

    private static void DetachOne(int ifindex, bool ingress, int programFd) =>
        Libbpf.bpf_prog_detach2(programFd, ifindex, AttachType(ingress)); // replaced by a later agent, or the interface is gone: nothing to undo

    private static int AttachType(bool ingress) => ingress ? Libbpf.BPF_TCX_INGRESS : Libbpf.BPF_TCX_EGRESS;

    private static string Direction(bool ingress) => ingress ? "ingress" : "egress";
}
