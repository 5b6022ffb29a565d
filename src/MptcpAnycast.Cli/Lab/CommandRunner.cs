using System.Diagnostics;

namespace MptcpAnycast.Cli.Lab;

/// <summary>The result of one external command: its exit code and its standard output and error, joined.</summary>
internal readonly record struct CommandResult(int ExitCode, string Output)
{
    public bool Succeeded => ExitCode == 0;
}

/// <summary>
/// Runs external commands (<c>ip</c>, <c>nft</c>, <c>iptables</c>, <c>sysctl</c>, <c>ss</c>) with an argument list
/// (no shell, no quoting), an optional standard input and a time limit.
/// </summary>
internal static class CommandRunner
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Runs the command; throws with its output when it fails or times out.</summary>
    public static string Run(string file, IEnumerable<string> arguments, string? standardInput = null, TimeSpan? timeout = null)
    {
        CommandResult result = TryRun(file, arguments, standardInput, timeout);
        if (!result.Succeeded)
        {
            throw new InvalidOperationException($"'{Describe(file, arguments)}' exited with {result.ExitCode}: {result.Output.Trim()}");
        }

        return result.Output;
    }

    /// <summary>Runs the command; returns its exit code and output. Throws only when it cannot start or times out.</summary>
    public static CommandResult TryRun(string file, IEnumerable<string> arguments, string? standardInput = null, TimeSpan? timeout = null)
    {
        var psi = new ProcessStartInfo(file);
        foreach (string argument in arguments)
        {
            psi.ArgumentList.Add(argument);
        }

        return Execute(psi, standardInput, timeout);
    }

    /// <summary>Like <see cref="TryRun(string, IEnumerable{string}, string?, TimeSpan?)"/>, with the arguments as one command-line string.</summary>
    public static CommandResult TryRun(string file, string arguments, TimeSpan? timeout = null) =>
        Execute(new ProcessStartInfo(file, arguments), standardInput: null, timeout);

    private static CommandResult Execute(ProcessStartInfo psi, string? standardInput, TimeSpan? timeout)
    {
        string file = psi.FileName;
        psi.RedirectStandardOutput = true;
        psi.RedirectStandardError = true;
        psi.RedirectStandardInput = standardInput is not null;
        psi.UseShellExecute = false;
        using Process process = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file}");
        // The pipes are drained by threads of their own, not by the thread pool: callers run on pool threads (a route
        // flip in the middle of 500 streams) and block here, and a pool busy with those streams took over a second to
        // run the readers' continuations, stalling the caller and, with it, everything it was timing.
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
            throw new TimeoutException($"'{Describe(file, psi.ArgumentList.Count > 0 ? psi.ArgumentList : [psi.Arguments])}' did not finish in {limit.TotalSeconds:0} s");
        }

        process.WaitForExit();
        return new CommandResult(process.ExitCode, stdout.Result + stderr.Result);
    }

    private static Task<string> ReadToEndOnOwnThread(StreamReader reader) =>
        Task.Factory.StartNew(reader.ReadToEnd, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    private static string Describe(string file, IEnumerable<string> arguments) =>
        string.Join(' ', new[] { file }.Concat(arguments.Select(a => a.Contains(' ') ? $"'{a}'" : a)));
}
