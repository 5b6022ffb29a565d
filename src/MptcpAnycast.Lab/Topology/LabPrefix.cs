namespace MptcpAnycast.Lab;

/// <summary>
/// Prefixes for throw-away topologies, unique per process and call: <c>STEM&lt;pid&gt;x&lt;n&gt;</c>. The first prefix of a stem
/// in a process removes the namespaces (and lab state files) a crashed earlier run left behind: names <c>STEM&lt;pid&gt;...</c> whose pid no
/// longer runs. Only names of this shape are ever considered, so other namespaces are never touched.
/// </summary>
public static class LabPrefix
{
    /// <summary>The stem of the topologies tests and benchmarks make.</summary>
    public const string TestStem = "mplt";

    private static readonly HashSet<string> s_cleaned = [];
    private static int s_counter;

    /// <summary>A fresh prefix; on the first call for <paramref name="stem"/>, removes that stem's stale namespaces.</summary>
    public static string New(string stem = TestStem)
    {
        if (LabOptions.ValidatePrefix(stem) is string problem)
        {
            throw new ArgumentException(problem, nameof(stem));
        }

        bool first;
        lock (s_cleaned)
        {
            first = s_cleaned.Add(stem);
        }

        if (first)
        {
            foreach (string name in Stale(stem))
            {
                new LabNamespace(name).Delete();
                LabState.Delete(name.Split('-')[0]); // an anycast lab's state file, if it was one
            }
        }

        return $"{stem}{Environment.ProcessId}x{Interlocked.Increment(ref s_counter)}";
    }

    /// <summary>Namespaces <c>STEM&lt;pid&gt;...</c> whose pid no longer runs.</summary>
    public static IReadOnlyList<string> Stale(string stem)
    {
        var stale = new List<string>();
        foreach (string name in LabNamespace.List().Where(n => n.StartsWith(stem, StringComparison.Ordinal)))
        {
            string digits = new([.. name[stem.Length..].TakeWhile(char.IsAsciiDigit)]);
            if (int.TryParse(digits, out int pid) && !Directory.Exists($"/proc/{pid}"))
            {
                stale.Add(name);
            }
        }

        return stale;
    }
}
