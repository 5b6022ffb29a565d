using MptcpAnycast.Cli.Lab;
using MptcpAnycast.Lab.Tests.Infrastructure;

namespace MptcpAnycast.Lab.Tests.Lab;

/// <summary>
/// A lab for one test, with a prefix no other test (or test run) uses: <c>mplt&lt;pid&gt;x&lt;n&gt;</c>. Disposing removes it.
/// Labs left by a crashed earlier run (their pid is gone) are removed when the first lab of this run is made.
/// </summary>
public sealed class TestLab : IDisposable
{
    private const string Stem = "mplt";
    private static int s_counter;
    private static int s_cleaned;

    private TestLab(LabTopology topology) => Topology = topology;

    internal LabTopology Topology { get; }

    internal static string NewPrefix() => $"{Stem}{Environment.ProcessId}x{Interlocked.Increment(ref s_counter)}";

    internal static TestLab Up(LabOptions options)
    {
        if (Interlocked.Exchange(ref s_cleaned, 1) == 0)
        {
            RemoveOrphans();
        }

        return new TestLab(LabTopology.Up(options with { Prefix = NewPrefix() }));
    }

    public void Dispose() => Topology.Down();

    private static void RemoveOrphans()
    {
        foreach (string prefix in StaleNamespaces.Find(Stem).Select(name => name.Split('-')[0]).Distinct())
        {
            LabTopology.Down(prefix);
        }
    }
}
