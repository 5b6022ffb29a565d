using System.ComponentModel;
using System.Runtime.InteropServices;

namespace MptcpAnycast.Tests.Rescue.Bpf;

/// <summary>
/// Pins the calling thread to one CPU until disposed, then gives it back the CPUs it had. A BPF LRU map keeps a
/// batch of free and newly written entries per CPU, so which entries it evicts depends on the CPUs its writer ran on.
/// </summary>
internal sealed unsafe partial class ThreadCpu : IDisposable
{
    private const int MaskBytes = 128; // 1,024 CPUs, as glibc's cpu_set_t

    private readonly byte[] _previous = new byte[MaskBytes];

    private ThreadCpu(int cpu)
    {
        fixed (byte* previous = _previous)
        {
            Check(sched_getaffinity(0, MaskBytes, previous), "sched_getaffinity");
        }

        Set(cpu);
    }

    /// <summary>The CPUs the calling thread may run on now.</summary>
    public static IReadOnlyList<int> Allowed()
    {
        byte* mask = stackalloc byte[MaskBytes];
        Check(sched_getaffinity(0, MaskBytes, mask), "sched_getaffinity");
        var cpus = new List<int>();
        for (int cpu = 0; cpu < MaskBytes * 8; cpu++)
        {
            if ((mask[cpu / 8] & (1 << (cpu % 8))) != 0)
            {
                cpus.Add(cpu);
            }
        }

        return cpus;
    }

    public static ThreadCpu PinTo(int cpu) => new(cpu);

    /// <summary>Moves the pinned thread to another CPU.</summary>
    public void Set(int cpu)
    {
        byte* mask = stackalloc byte[MaskBytes];
        new Span<byte>(mask, MaskBytes).Clear();
        mask[cpu / 8] = (byte)(1 << (cpu % 8));
        Check(sched_setaffinity(0, MaskBytes, mask), $"sched_setaffinity to CPU {cpu}");
    }

    public void Dispose()
    {
        fixed (byte* previous = _previous)
        {
            Check(sched_setaffinity(0, MaskBytes, previous), "sched_setaffinity back");
        }
    }

    private static void Check(int result, string what)
    {
        if (result != 0)
        {
            throw new Win32Exception(Marshal.GetLastPInvokeError(), what);
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int sched_getaffinity(int pid, nint size, byte* mask);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int sched_setaffinity(int pid, nint size, byte* mask);
}
