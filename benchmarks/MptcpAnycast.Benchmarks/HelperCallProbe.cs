using System.Runtime.InteropServices;
using MptcpAnycast.Rescue.Bpf;

namespace MptcpAnycast.Benchmarks;

/// <summary>
/// What one call from a BPF program into the kernel costs on this machine, for <c>rescue-decision</c>: two tc programs
/// built from raw instructions, one that returns at once and one that first calls <c>bpf_get_prandom_u32</c> (a helper
/// that does almost nothing) <see cref="Calls"/> times, both run hot with <c>BPF_PROG_TEST_RUN</c>. The difference per
/// call is the price of a call and its return, which CPU mitigations (retpolines, return thunks) can raise well above
/// the few instructions the helper runs; the socket lookup of a local segment makes several such calls in a row.
/// </summary>
internal sealed unsafe partial class HelperCallProbe : IDisposable
{
    public const int Calls = 10;
    private const int BpfProgTypeSchedCls = 3;
    private const int HelperGetPrandomU32 = 7;
    private readonly int _empty, _calling;

    private HelperCallProbe(int empty, int calling)
    {
        _empty = empty;
        _calling = calling;
    }

    public static HelperCallProbe Load()
    {
        int empty = LoadProgram(0);
        try
        {
            return new HelperCallProbe(empty, LoadProgram(Calls));
        }
        catch
        {
            Tmds.Linux.LibC.close(empty);
            throw;
        }
    }

    /// <summary>The hot cost of one helper call, in ns: the calling program's mean per run less the empty one's, per call.</summary>
    public double MeasureCall(ReadOnlySpan<byte> frame, int repeat) => (Run(_calling, frame, repeat) - Run(_empty, frame, repeat)) / Calls;

    public void Dispose()
    {
        Tmds.Linux.LibC.close(_calling);
        Tmds.Linux.LibC.close(_empty);
    }

    private static int LoadProgram(int calls)
    {
        // One eBPF instruction is 8 bytes: opcode, dst/src registers, 16-bit offset, 32-bit immediate.
        var instructions = new ulong[calls + 2];
        for (int i = 0; i < calls; i++)
        {
            instructions[i] = 0x85UL | ((ulong)HelperGetPrandomU32 << 32); // call imm
        }

        instructions[calls] = 0xb7UL; // r0 = 0 (TC_ACT_OK)
        instructions[calls + 1] = 0x95UL; // exit
        fixed (ulong* insns = instructions)
        {
            int fd = bpf_prog_load(BpfProgTypeSchedCls, $"probe_{calls}", "GPL", insns, (nuint)instructions.Length, 0);
            return fd >= 0 ? fd : throw new InvalidOperationException($"BPF_PROG_LOAD of the {calls}-call probe failed: errno {-fd}");
        }
    }

    private static double Run(int programFd, ReadOnlySpan<byte> frame, int repeat)
    {
        RescueDataplane.TestRun(programFd, frame, new byte[frame.Length], out _, repeat, out uint nanoseconds);
        return nanoseconds;
    }

    [LibraryImport("libbpf.so.1", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int bpf_prog_load(int progType, string progName, string license, ulong* insns, nuint insnCount, nint opts);
}
