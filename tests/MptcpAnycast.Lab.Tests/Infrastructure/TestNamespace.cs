using MptcpAnycast.Cli.Lab;

namespace MptcpAnycast.Lab.Tests.Infrastructure;

/// <summary>
/// A throw-away network namespace (<c>ip netns add</c>) with loopback up. Disposing deletes it; namespaces left
/// by a crashed earlier test run (their creator process is gone) are deleted when the next one is created.
/// </summary>
public sealed class TestNamespace : IDisposable
{
    private const string Prefix = "mpat";
    private static int s_counter;
    private static int s_cleaned;

    public TestNamespace(string role = "ns")
    {
        if (Interlocked.Exchange(ref s_cleaned, 1) == 0)
        {
            DeleteStale();
        }

        Name = $"{Prefix}{Environment.ProcessId}-{role}{Interlocked.Increment(ref s_counter)}";
        Shell.Run("ip", $"netns add {Name}");
        try
        {
            Exec("ip link set lo up");
        }
        catch
        {
            Shell.TryRun("ip", $"netns del {Name}");
            throw;
        }
    }

    public string Name { get; }

    /// <summary>Runs a shell command inside the namespace; throws with its output when it fails.</summary>
    public string Exec(string command) => Shell.Run("ip", $"netns exec {Name} sh -c \"{command.Replace("\"", "\\\"")}\"");

    /// <summary>Runs a shell command inside the namespace; returns its exit code and output.</summary>
    public (int ExitCode, string Output) TryExec(string command) => Shell.TryRun("ip", $"netns exec {Name} sh -c \"{command.Replace("\"", "\\\"")}\"");

    /// <summary>Sets a sysctl inside the namespace.</summary>
    public void Sysctl(string key, string value) => Exec($"sysctl -qw {key}={value}");

    /// <summary>
    /// Runs <paramref name="action"/> synchronously on a fresh thread that has entered this namespace (setns).
    /// Sockets created there belong to the namespace for their whole life, whatever thread uses them later.
    /// </summary>
    public T Run<T>(Func<T> action) => NamespaceThread.Run(Name, action);

    public void Dispose() => Shell.TryRun("ip", $"netns del {Name}");

    private static void DeleteStale()
    {
        foreach (string name in StaleNamespaces.Find(Prefix))
        {
            Shell.TryRun("ip", $"netns del {name}");
        }
    }
}

public static class Shell
{
    public static string Run(string file, string arguments)
    {
        (int code, string output) = TryRun(file, arguments);
        if (code != 0)
        {
            throw new InvalidOperationException($"'{file} {arguments}' exited with {code}: {output.Trim()}");
        }

        return output;
    }

    public static (int ExitCode, string Output) TryRun(string file, string arguments, int timeoutMs = 60_000)
    {
        CommandResult result = CommandRunner.TryRun(file, arguments, TimeSpan.FromMilliseconds(timeoutMs));
        return (result.ExitCode, result.Output);
    }
}
