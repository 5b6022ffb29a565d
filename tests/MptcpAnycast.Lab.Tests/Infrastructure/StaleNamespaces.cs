using MptcpAnycast.Cli.Lab;

namespace MptcpAnycast.Lab.Tests.Infrastructure;

/// <summary>
/// Namespaces a crashed earlier test run left behind: their names are <c>STEM&lt;pid&gt;...</c> and that pid no longer
/// runs. Only names of this shape are ever considered, so other people's namespaces are never touched.
/// </summary>
public static class StaleNamespaces
{
    public static IReadOnlyList<string> Find(string stem)
    {
        CommandResult list = CommandRunner.TryRun("ip", ["netns", "list"]);
        if (!list.Succeeded)
        {
            return [];
        }

        var stale = new List<string>();
        foreach (string line in list.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            string name = line.Split(' ')[0];
            if (!name.StartsWith(stem, StringComparison.Ordinal))
            {
                continue;
            }

            string digits = new(name[stem.Length..].TakeWhile(char.IsAsciiDigit).ToArray());
            if (int.TryParse(digits, out int pid) && !Directory.Exists($"/proc/{pid}"))
            {
                stale.Add(name);
            }
        }

        return stale;
    }
}
