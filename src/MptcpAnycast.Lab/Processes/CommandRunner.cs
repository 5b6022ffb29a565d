using System.Diagnostics;

namespace MptcpAnycast.Lab;

/// <summary>The result of one external command: its exit code and its standard output and error, joined.</summary>
public readonly record struct CommandResult(int ExitCode, string Output)
{
    public bool Succeeded => ExitCode == 0;
}

/// <summary>
/// Runs external commands to completion (<c>ip</c>, <c>nft</c>, <c>iptables</c>, <c>sysctl</c>, <c>ss</c>, ...) with an
/// argument list (no shell, no quoting), an optional standard input and a time limit. Long-running children are
/// <see cref="ChildProcess"/>.
/// </summary>
public static class CommandRunner
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Runs the command; throws with its output when it fails or times out.</summary>
    public static string Run(string file, IEnumerable<string> arguments, string? standardInput = null, TimeSpan? timeout = null, string? workingDirectory = null)
    {
        string[] args = [.. arguments];
        CommandResult result = TryRun(file, args, standardInput, timeout, workingDirectory);
        if (!result.Succeeded)
        {
            throw new InvalidOperationException($"'{Describe(file, args)}' exited with {result.ExitCode}: {result.Output.Trim()}");
        }

        return result.Output;
    }

    /// <summary>Runs the command; returns its exit code and output. Throws only when it cannot start or times out.</summary>
    public static CommandResult TryRun(string file, IEnumerable<string> arguments, string? standardInput = null, TimeSpan? timeout = null, string? workingDirectory = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            WorkingDirectory = workingDirectory ?? "",
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = standardInput is not null,
            UseShellExecute = false,
        };
        foreach (string argument in arguments)
        {
            psi.ArgumentList.Add(argument);
        }

        using Process process = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file}");
        // Drained on threads of their own: a caller that blocks here from a busy thread pool must not wait for that pool.
        Task<string> stdout = ReadToEndOnOwnThread(process.StandardOutput);
        Task<string> stderr = ReadToEndOnOwnThread(process.StandardError);
        if (standardInput is not null)
        {
            process.StandardInput.Write(standardInput);
            process.StandardInput.Close();
        }

        TimeSpan limit = timeout ?? DefaultTimeout;
        if (!process.WaitForExit(limit))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"'{Describe(file, psi.ArgumentList)}' did not finish in {limit.TotalSeconds:0} s");
        }

        process.WaitForExit();
        return new CommandResult(process.ExitCode, stdout.Result + stderr.Result);
    }

    /// <summary>Whether <paramref name="file"/> is an executable in one of the <c>PATH</c> directories.</summary>
    public static bool IsOnPath(string file)
    {
        if (OperatingSystem.IsWindows())
        {
            return false;
        }

        const UnixFileMode AnyExecute = UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string path = Path.Combine(dir, file);
            if (File.Exists(path) && (File.GetUnixFileMode(path) & AnyExecute) != 0)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The command as one line for messages: <c>ip -n ns addr add ...</c>, arguments with spaces quoted.</summary>
    public static string Describe(string file, IEnumerable<string> arguments) =>
        string.Join(' ', new[] { file }.Concat(arguments.Select(a => a.Contains(' ') ? $"'{a}'" : a)));

    private static Task<string> ReadToEndOnOwnThread(StreamReader reader) =>
        Task.Factory.StartNew(reader.ReadToEnd, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
}
