using MptcpAnycast.Interop;

namespace MptcpAnycast.Rescue.Bpf;

/// <summary>
/// The rescue programs as <c>cls_bpf</c> filters of one interface's <c>clsact</c> qdisc (kernels without tcx, 6.3-6.5),
/// at a fixed handle and priority, so that attaching again (a restarted agent) replaces the programs in place.
/// </summary>
internal sealed unsafe class ClsactAttachment : TcAttachment
{
    /// <summary>The tc filter's handle and priority.</summary>
    public const uint FilterHandle = 0x52;
    public const uint FilterPriority = 0x5200;

    private readonly bool _createdHook;

    private ClsactAttachment(int ifindex, bool createdHook)
        : base(ifindex)
    {
        _createdHook = createdHook;
    }

    public override string Kind => "clsact";

    /// <summary>Attaches both programs to <paramref name="ifindex"/>, making its <c>clsact</c> qdisc when it has none.</summary>
    public static ClsactAttachment Attach(int ifindex, int ingressFd, int egressFd)
    {
        Libbpf.TcHook hook = Hook(ifindex, Libbpf.BPF_TC_INGRESS | Libbpf.BPF_TC_EGRESS);
        int created = Libbpf.bpf_tc_hook_create(&hook);
        if (created < 0 && -created != Errno.EEXIST)
        {
            throw new RescueDataplaneException($"cannot make the clsact qdisc on interface {ifindex}", -created);
        }

        var attachment = new ClsactAttachment(ifindex, created == 0);
        try
        {
            AttachOne(ifindex, Libbpf.BPF_TC_INGRESS, ingressFd);
            AttachOne(ifindex, Libbpf.BPF_TC_EGRESS, egressFd);
        }
        catch
        {
            attachment.Detach();
            throw;
        }

        return attachment;
    }

    /// <summary>Removes both filters, and the <c>clsact</c> qdisc when <see cref="Attach"/> made it.</summary>
    public override void Detach()
    {
        RemoveFilters(InterfaceIndex);
        if (_createdHook)
        {
            Libbpf.TcHook both = Hook(InterfaceIndex, Libbpf.BPF_TC_INGRESS | Libbpf.BPF_TC_EGRESS);
            Libbpf.bpf_tc_hook_destroy(&both);
        }
    }

    /// <summary>
    /// Removes the filters at the rescue handle and priority, whoever attached them (this agent, or an earlier one whose
    /// programs a tcx attachment now supersedes); the qdisc stays.
    /// </summary>
    public static void RemoveFilters(int ifindex)
    {
        foreach (uint point in (uint[])[Libbpf.BPF_TC_INGRESS, Libbpf.BPF_TC_EGRESS])
        {
            Libbpf.TcHook hook = Hook(ifindex, point);
            Libbpf.TcOpts opts = Opts(0, 0);
            Libbpf.bpf_tc_detach(&hook, &opts); // none there, or the interface went away: nothing to undo
        }
    }

    /// <summary>The id of the program at the rescue handle and priority of <paramref name="ingress"/> or egress, or 0.</summary>
    public static uint FindProgram(int ifindex, bool ingress)
    {
        Libbpf.TcHook hook = Hook(ifindex, ingress ? Libbpf.BPF_TC_INGRESS : Libbpf.BPF_TC_EGRESS);
        Libbpf.TcOpts opts = Opts(0, 0);
        return Libbpf.bpf_tc_query(&hook, &opts) == 0 ? opts.prog_id : 0;
    }

    private static void AttachOne(int ifindex, uint point, int programFd)
    {
        Libbpf.TcHook hook = Hook(ifindex, point);
        Libbpf.TcOpts opts = Opts(programFd, Libbpf.BPF_TC_F_REPLACE);
        int attached = Libbpf.bpf_tc_attach(&hook, &opts);
        if (attached < 0)
        {
            string where = point == Libbpf.BPF_TC_INGRESS ? "ingress" : "egress";
            throw new RescueDataplaneException($"cannot attach the rescue program to the tc {where} of interface {ifindex}", -attached);
        }
    }

    private static Libbpf.TcHook Hook(int ifindex, uint point) =>
        new() { sz = (nuint)sizeof(Libbpf.TcHook), ifindex = ifindex, attach_point = point };

    private static Libbpf.TcOpts Opts(int programFd, uint flags) =>
        new() { sz = (nuint)sizeof(Libbpf.TcOpts), prog_fd = programFd, flags = flags, handle = FilterHandle, priority = FilterPriority };
}
