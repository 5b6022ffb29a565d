namespace MptcpAnycast.Rescue.Bpf;

/// <summary>
/// The number of possible CPUs (<c>/sys/devices/system/cpu/possible</c>, "0-3" or "0,2-5"): the kernel sizes a
/// per-CPU map's value by it, which can exceed the CPUs online or <see cref="Environment.ProcessorCount"/>.
/// </summary>
internal static class PossibleCpus
{
    private static readonly Lazy<int> s_count = new(() => Parse(File.ReadAllText("/sys/devices/system/cpu/possible")));

    public static int Count => s_count.Value;

    /// <summary>One past the highest CPU number in a kernel CPU list.</summary>
    /// <exception cref="FormatException">The text is not a CPU list.</exception>
    public static int Parse(string list)
    {
        int highest = -1;
        foreach (string part in list.Trim().Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            string last = part.Contains('-') ? part[(part.IndexOf('-') + 1)..] : part;
            if (!int.TryParse(last, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int cpu) || cpu > 65535)
            {
                throw new FormatException($"'{list.Trim()}' is not a CPU list");
            }

            highest = Math.Max(highest, cpu);
        }

        return highest < 0 ? throw new FormatException($"'{list.Trim()}' is not a CPU list") : highest + 1;
    }
}
