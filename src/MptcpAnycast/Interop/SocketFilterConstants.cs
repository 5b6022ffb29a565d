namespace MptcpAnycast.Interop;

/// <summary>Classic BPF socket filters (<c>linux/filter.h</c>, <c>linux/bpf_common.h</c>, <c>asm-generic/socket.h</c>).</summary>
internal static class SocketFilterConstants
{
    public const int SO_ATTACH_FILTER = 26;

    // Instruction classes.
    public const ushort BPF_LD = 0x00;
    public const ushort BPF_ALU = 0x04;
    public const ushort BPF_JMP = 0x05;
    public const ushort BPF_RET = 0x06;
    public const ushort BPF_MISC = 0x07;

    // ld/ldx sizes and modes.
    public const ushort BPF_W = 0x00;
    public const ushort BPF_B = 0x10;
    public const ushort BPF_IMM = 0x00;
    public const ushort BPF_ABS = 0x20;

    // alu/jmp operations and sources.
    public const ushort BPF_LSH = 0x60;
    public const ushort BPF_JGE = 0x30;
    public const ushort BPF_JSET = 0x40;
    public const ushort BPF_K = 0x00;
    public const ushort BPF_X = 0x08;

    // misc.
    public const ushort BPF_TAX = 0x00;
}
