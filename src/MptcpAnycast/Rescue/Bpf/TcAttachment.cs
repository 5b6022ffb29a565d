using MptcpAnycast.Interop;

namespace MptcpAnycast.Rescue.Bpf;

/// <summary>
/// The rescue programs on one interface's tc ingress and egress: through tcx where the kernel has it (Linux 6.6+),
/// else as filters of a <c>clsact</c> qdisc. Either way the kernel holds the programs, not the agent's descriptors, so a
/// killed agent's program goes on tunnelling the flows it knows, and a new agent replaces it (see the two kinds).
/// </summary>
internal abstract unsafe class TcAttachment
{
    protected TcAttachment(int ifindex) => InterfaceIndex = ifindex;

    public int InterfaceIndex { get; }

    /// <summary>How the programs are attached: <c>tcx</c> or <c>clsact</c>.</summary>
    public abstract string Kind { get; }

    /// <summary>What the operator should know about the attachment (an earlier program that could not be replaced).</summary>
    public virtual IReadOnlyList<string> Warnings => [];

    /// <summary>Takes both programs off the interface.</summary>
    public abstract void Detach();

    /// <summary>
    /// Attaches the programs through tcx, or through a <c>clsact</c> qdisc when the kernel has no tcx or
    /// <paramref name="tcx"/> is false. <paramref name="earlier"/>: the ids of the programs an earlier agent on this
    /// interface recorded (0 when none). <paramref name="pins"/>: where tcx programs are pinned (null: not pinned; a
    /// clsact filter needs no pin, its handle finds it).
    /// </summary>
    public static TcAttachment Attach(int ifindex, int ingressFd, int egressFd, bool tcx = true, (uint Ingress, uint Egress) earlier = default, RescuePins? pins = null) =>
        (tcx ? TcxAttachment.TryAttach(ifindex, ingressFd, egressFd, earlier, pins) : null) ?? (TcAttachment)ClsactAttachment.Attach(ifindex, ingressFd, egressFd);

    /// <summary>
    /// The programs attached to <paramref name="ifindex"/> now, as the kernel reports them, one "hook id name" each
    /// (hook <c>tcx-ingress</c>, <c>tcx-egress</c>, <c>clsact-ingress</c> or <c>clsact-egress</c>; only the filter at
    /// the rescue handle of a qdisc). A name is "?" when the program cannot be read (no <c>CAP_SYS_ADMIN</c>).
    /// </summary>
    public static List<string> Describe(int ifindex)
    {
        var found = new List<string>();
        foreach (bool ingress in (bool[])[true, false])
        {
            string direction = ingress ? "ingress" : "egress";
            foreach (uint id in TcxAttachment.Query(ifindex, ingress)?.Ids ?? [])
            {
                found.Add($"tcx-{direction} {id} {ProgramName(id) ?? "?"}");
            }

            if (ClsactAttachment.FindProgram(ifindex, ingress) is uint filter and not 0)
            {
                found.Add($"clsact-{direction} {filter} {ProgramName(filter) ?? "?"}");
            }
        }

        return found;
    }

    /// <summary>The name the kernel holds for program <paramref name="id"/>, or null when it cannot be read.</summary>
    internal static string? ProgramName(uint id)
    {
        int fd = Libbpf.bpf_prog_get_fd_by_id(id);
        if (fd < 0)
        {
            return null;
        }

        try
        {
            return ProgramNameOf(fd);
        }
        finally
        {
            Tmds.Linux.LibC.close(fd);
        }
    }

    /// <summary>The name of the program behind <paramref name="fd"/>, or null.</summary>
    internal static string? ProgramNameOf(int fd)
    {
        if (!TryInfo(fd, out Libbpf.ProgInfo info))
        {
            return null;
        }

        var name = new ReadOnlySpan<byte>(info.name, 16);
        int end = name.IndexOf((byte)0);
        return System.Text.Encoding.ASCII.GetString(end < 0 ? name : name[..end]);
    }

    /// <summary>The kernel's id of the program behind <paramref name="fd"/>, or 0.</summary>
    internal static uint ProgramId(int fd) => TryInfo(fd, out Libbpf.ProgInfo info) ? info.id : 0;

    private static bool TryInfo(int fd, out Libbpf.ProgInfo info)
    {
        info = default;
        uint length = (uint)sizeof(Libbpf.ProgInfo);
        fixed (Libbpf.ProgInfo* p = &info)
        {
            return Libbpf.bpf_obj_get_info_by_fd(fd, p, &length) >= 0;
        }
    }
}
