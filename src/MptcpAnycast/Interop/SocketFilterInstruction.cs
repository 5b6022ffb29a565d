using System.Runtime.InteropServices;

namespace MptcpAnycast.Interop;

/// <summary>One classic BPF instruction: <c>struct sock_filter { __u16 code; __u8 jt; __u8 jf; __u32 k; }</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
internal readonly struct SocketFilterInstruction(ushort code, byte jumpIfTrue, byte jumpIfFalse, uint k)
{
    public readonly ushort Code = code;
    public readonly byte JumpIfTrue = jumpIfTrue;
    public readonly byte JumpIfFalse = jumpIfFalse;
    public readonly uint K = k;

    public static SocketFilterInstruction Statement(ushort code, uint k) => new(code, 0, 0, k);

    public static SocketFilterInstruction Jump(ushort code, uint k, byte jumpIfTrue, byte jumpIfFalse) => new(code, jumpIfTrue, jumpIfFalse, k);
}
