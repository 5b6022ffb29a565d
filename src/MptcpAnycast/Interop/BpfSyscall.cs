using System.Runtime.InteropServices;

namespace MptcpAnycast.Interop;

#pragma warning disable IDE1006 // C names

/// <summary>
/// The <c>bpf(2)</c> commands that attach programs to tcx hooks, called directly: libbpf 1.1 (Debian 12) predates tcx
/// and passes neither the new attach flags' relative program nor the hook's revision.
/// A failing call returns <c>-errno</c>.
/// </summary>
internal static unsafe partial class BpfSyscall
{
    // enum bpf_cmd (linux/bpf.h).
    public const int BPF_PROG_ATTACH = 8;
    public const int BPF_PROG_DETACH = 9;
    public const int BPF_PROG_QUERY = 16;

    // enum bpf_attach_type (linux/bpf.h, Linux 6.6): a tcx hook takes programs without a qdisc.
    public const int BPF_TCX_INGRESS = 46;
    public const int BPF_TCX_EGRESS = 47;

    // Attach flags (linux/bpf.h; those after BPF_F_REPLACE: Linux 6.6, multi-program hooks).
    public const uint BPF_F_REPLACE = 1 << 2;
    public const uint BPF_F_BEFORE = 1 << 3;

    /// <summary>The attributes of <c>BPF_PROG_ATTACH</c> and <c>BPF_PROG_DETACH</c> (linux/bpf.h, Linux 6.6).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct AttachAttr
    {
        public uint target_ifindex;
        public uint attach_bpf_fd;
        public uint attach_type;
        public uint attach_flags;
        public uint replace_bpf_fd;
        public uint relative_fd_or_id;
        public ulong expected_revision;
    }

    /// <summary>The attributes of <c>BPF_PROG_QUERY</c> (linux/bpf.h, Linux 6.6).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct QueryAttr
    {
        public uint target_ifindex;
        public uint attach_type;
        public uint query_flags;
        public uint attach_flags;
        public ulong prog_ids;
        public uint count;
        private readonly uint _pad;
        public ulong prog_attach_flags;
        public ulong link_ids;
        public ulong link_attach_flags;
        public ulong revision;
    }

    /// <summary>The <c>bpf</c> system call's number on this architecture, or -1 where it is not known here.</summary>
    private static readonly long Number = RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => 321,
        Architecture.Arm64 or Architecture.RiscV64 or Architecture.LoongArch64 => 280, // asm-generic/unistd.h
        Architecture.Ppc64le => 361,
        Architecture.S390x => 351,
        _ => -1,
    };

    public static int Attach(AttachAttr* attr) => Call(BPF_PROG_ATTACH, attr, sizeof(AttachAttr));

    public static int Detach(AttachAttr* attr) => Call(BPF_PROG_DETACH, attr, sizeof(AttachAttr));

    public static int Query(QueryAttr* attr) => Call(BPF_PROG_QUERY, attr, sizeof(QueryAttr));

    private static int Call(int command, void* attr, int size)
    {
        if (Number < 0)
        {
            return -Errno.EOPNOTSUPP;
        }

        long result = syscall(Number, command, attr, (uint)size);
        return result >= 0 ? (int)result : -Marshal.GetLastPInvokeError();
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial long syscall(long number, long command, void* attr, uint size);
}
