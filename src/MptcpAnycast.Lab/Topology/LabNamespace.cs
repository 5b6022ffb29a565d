using System.Diagnostics;
using System.Globalization;

namespace MptcpAnycast.Lab;

/// <summary>
/// One network namespace of a lab, by name (<c>ip netns</c>): commands inside it (always argument lists, never a shell),
/// sockets made in it from this process (<see cref="Run{T}(Func{T})"/>), child processes started in it. Disposing deletes
/// it, with every process still inside.
/// </summary>
public sealed class LabNamespace : IDisposable
{
    /// <summary>A handle on the namespace called <paramref name="name"/> (which may or may not exist yet).</summary>
    public LabNamespace(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.')) || name is "." or "..")
        {
            throw new ArgumentException($"'{name}' is not a network namespace name (letters, digits, '_', '-', '.')", nameof(name));
        }

        Name = name;
    }

    public string Name { get; }

    /// <summary>Whether <c>ip netns list</c> shows it.</summary>
    public bool Exists => List().Contains(Name);

    /// <summary>
    /// Makes the namespace (<c>ip netns add</c>) with <c>lo</c> up and IPv6 duplicate address detection off (addresses
    /// would otherwise stay tentative for a second or two after a link comes up, and the first IPv6 packets wait for it).
    /// Deletes it again when a step fails.
    /// </summary>
    public static LabNamespace Create(string name)
    {
        var ns = new LabNamespace(name);
        CommandRunner.Run("ip", ["netns", "add", name]);
        try
        {
            ns.Ip("link", "set", "lo", "up");
            ns.Sysctl("net.ipv6.conf.all.accept_dad", "0");
            ns.Sysctl("net.ipv6.conf.default.accept_dad", "0");
            return ns;
        }
        catch
        {
            ns.Delete();
            throw;
        }
    }

    /// <summary>The names <c>ip netns list</c> shows; empty when it fails.</summary>
    public static IReadOnlyList<string> List()
    {
        CommandResult list = CommandRunner.TryRun("ip", ["netns", "list"]);
        return list.Succeeded
            ? list.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(line => line.Split(' ')[0]).ToArray()
            : [];
    }

    /// <summary><c>ip -n NAME ARGUMENTS</c>; throws with the output when it fails.</summary>
    public string Ip(params string[] arguments) => CommandRunner.Run("ip", ["-n", Name, .. arguments]);

    /// <summary><c>ip -n NAME ARGUMENTS</c>; returns the exit code and output.</summary>
    public CommandResult TryIp(params string[] arguments) => CommandRunner.TryRun("ip", ["-n", Name, .. arguments]);

    /// <summary>Runs <paramref name="file"/> inside the namespace (<c>ip netns exec</c>); throws with the output when it fails.</summary>
    public string Exec(string file, params string[] arguments) => CommandRunner.Run("ip", ["netns", "exec", Name, file, .. arguments]);

    /// <summary>Like <see cref="Exec"/>, but returns the exit code and output instead of throwing.</summary>
    public CommandResult TryExec(string file, params string[] arguments) => CommandRunner.TryRun("ip", ["netns", "exec", Name, file, .. arguments]);

    /// <summary>Like <see cref="TryExec"/>, with a time limit of its own (for commands that run for a while, such as wrk).</summary>
    public CommandResult TryExec(TimeSpan timeout, string file, params string[] arguments) =>
        CommandRunner.TryRun("ip", ["netns", "exec", Name, file, .. arguments], timeout: timeout);

    /// <summary><c>sysctl -w KEY=VALUE</c> inside the namespace.</summary>
    public void Sysctl(string key, string value) => Exec("sysctl", "-qw", $"{key}={value}");

    /// <summary><c>sysctl -n KEY</c> inside the namespace.</summary>
    public string ReadSysctl(string key) => Exec("sysctl", "-n", key).Trim();

    /// <summary>Loads an nft ruleset (<c>nft -f -</c>) inside the namespace; throws with nft's message and the ruleset when it fails.</summary>
    public void Nft(string ruleset)
    {
        CommandResult result = TryNft(ruleset);
        if (!result.Succeeded)
        {
            throw new InvalidOperationException($"nft in {Name} failed: {result.Output.Trim()}{Environment.NewLine}{ruleset}");
        }
    }

    /// <summary>Like <see cref="Nft"/>, but returns nft's exit code and output.</summary>
    public CommandResult TryNft(string ruleset) =>
        CommandRunner.TryRun("ip", ["netns", "exec", Name, "nft", "-f", "-"], standardInput: ruleset + Environment.NewLine);

    /// <summary>An SNMP/MIB counter of the namespace (<c>nstat -az NAME</c>, e.g. <c>TcpOutRsts</c>, <c>MPTcpExtMPJoinRejected</c>).</summary>
    public long Counter(string name)
    {
        foreach (string line in Exec("nstat", "-az", name).Split('\n'))
        {
            string[] fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length >= 2 && fields[0] == name)
            {
                return long.Parse(fields[1], CultureInfo.InvariantCulture);
            }
        }

        throw new InvalidOperationException($"nstat in {Name} has no counter {name}");
    }

    /// <summary>
    /// Runs <paramref name="create"/> on a thread that has entered this namespace and returns its result: sockets made
    /// there belong to the namespace for their whole life, whichever thread uses them later.
    /// </summary>
    public T Run<T>(Func<T> create)
    {
        using NetworkNamespace ns = NetworkNamespace.Open(Name);
        return ns.Run(create);
    }

    /// <inheritdoc cref="Run{T}(Func{T})"/>
    public void Run(Action action)
    {
        using NetworkNamespace ns = NetworkNamespace.Open(Name);
        ns.Run(action);
    }

    /// <summary>Starts a long-running <paramref name="command"/> inside the namespace (<c>ip netns exec NAME COMMAND</c>).</summary>
    public ChildProcess Start(IEnumerable<string> command, IReadOnlyDictionary<string, string>? environment = null) =>
        ChildProcess.Start(["ip", "netns", "exec", Name, .. command], environment);

    /// <summary>The processes inside the namespace (<c>ip netns pids</c>).</summary>
    public IReadOnlyList<int> Pids()
    {
        CommandResult pids = CommandRunner.TryRun("ip", ["netns", "pids", Name]);
        return pids.Succeeded
            ? pids.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(line => int.TryParse(line, CultureInfo.InvariantCulture, out int pid) ? pid : 0).Where(pid => pid > 0).ToArray()
            : [];
    }

    /// <summary>Ends the processes still inside (not this one) and deletes the namespace. Safe when it is already gone.</summary>
    /// <returns>Whether it existed.</returns>
    public bool Delete() => DeleteAll([this]).Count == 1;

    /// <summary>
    /// Ends the processes still inside <paramref name="namespaces"/> (not this one) and deletes them, fast: the
    /// namespaces are looked at and deleted in parallel, and every process is killed (SIGKILL) before any is waited
    /// for, up to 5 s. Safe for namespaces that are already gone.
    /// </summary>
    /// <returns>The names of those that existed.</returns>
    public static IReadOnlyList<string> DeleteAll(IEnumerable<LabNamespace> namespaces)
    {
        ArgumentNullException.ThrowIfNull(namespaces);
        LabNamespace[] all = [.. namespaces];
        int[] pids = [.. InParallel(all, ns => ns.Pids()).SelectMany(p => p).Where(pid => pid != Environment.ProcessId).Distinct()];
        var killed = new List<Process>();
        // Each process alone, not its tree: its children are inside the namespace too (they inherit it), and walking
        // the machine's process table for each one would cost a noticeable fraction of a second.
        foreach (int pid in pids)
        {
            try
            {
                Process process = Process.GetProcessById(pid);
                process.Kill();
                killed.Add(process);
            }
            catch (Exception ex) when (ex is ArgumentException or InvalidOperationException)
            {
                // Already gone, or exited meanwhile.
            }
        }

        // A killed process can do nothing more, so the namespaces go at once; its exit (which for one that had BPF
        // programs attached takes a while) completes meanwhile.
        bool[] deleted = InParallel(all, ns => CommandRunner.TryRun("ip", ["netns", "del", ns.Name]).Succeeded);
        var clock = Stopwatch.StartNew();
        foreach (Process process in killed)
        {
            TimeSpan left = TimeSpan.FromSeconds(5) - clock.Elapsed;
            process.WaitForExit(left > TimeSpan.Zero ? left : TimeSpan.Zero);
            process.Dispose();
        }

        return [.. all.Where((_, i) => deleted[i]).Select(ns => ns.Name)];
    }

    private static T[] InParallel<T>(LabNamespace[] namespaces, Func<LabNamespace, T> work)
    {
        var results = new T[namespaces.Length];
        Parallel.For(0, namespaces.Length, i => results[i] = work(namespaces[i]));
        return results;
    }

    /// <summary>Deletes the namespace (see <see cref="Delete"/>).</summary>
    public void Dispose() => Delete();

    public override string ToString() => Name;
}
