using System.Runtime.InteropServices;
using System.Text;
using MptcpAnycast.Interop;

namespace MptcpAnycast.Rescue.Bpf;

/// <summary>
/// Keeps libbpf's recent warnings (its print callback is process-wide), so that a refused load can say what the
/// verifier or libbpf said instead of only the errno.
/// </summary>
internal static unsafe class RescueDataplaneLog
{
    private const int Keep = 40;
    private static readonly Queue<string> s_recent = new();
    private static readonly Lock s_gate = new();
    private static int s_installed;

    public static void Install()
    {
        if (Interlocked.Exchange(ref s_installed, 1) == 0)
        {
            Libbpf.libbpf_set_print(&Print);
        }
    }

    /// <summary>The lines kept since the last call, oldest first; empty when there were none.</summary>
    public static string TakeRecent()
    {
        lock (s_gate)
        {
            string text = string.Join(Environment.NewLine, s_recent);
            s_recent.Clear();
            return text;
        }
    }

    [UnmanagedCallersOnly]
    private static int Print(int level, byte* format, nint args)
    {
        if (level == Libbpf.LIBBPF_DEBUG)
        {
            return 0;
        }

        // The verifier's log comes as one message of many kilobytes, its verdict at the end: format it whole, keep the
        // last lines. (A va_list can be used once, so there is no asking for the length first.)
        const int Size = 256 * 1024;
        byte* buffer = (byte*)NativeMemory.Alloc(Size);
        try
        {
            int written = Libbpf.vsnprintf(buffer, Size, format, args);
            if (written <= 0)
            {
                return 0;
            }

            string text = Encoding.UTF8.GetString(buffer, Math.Min(written, Size - 1));
            lock (s_gate)
            {
                foreach (string line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
                {
                    s_recent.Enqueue(line.TrimEnd());
                }

                while (s_recent.Count > Keep)
                {
                    s_recent.Dequeue();
                }
            }
        }
        finally
        {
            NativeMemory.Free(buffer);
        }

        return 0;
    }
}
