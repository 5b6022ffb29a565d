using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;

namespace MptcpAnycast.Cli.Lab;

/// <summary>
/// An ASP.NET Core app (HelloAnycast) run as a child process, usually inside a namespace (<c>ip netns exec NS ...</c>):
/// its output collected line by line, started when it logs "Now listening on", stopped with SIGTERM as systemd does.
/// </summary>
internal sealed class AppProcess : IDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _lines = new();
    private readonly TaskCompletionSource<bool> _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private AppProcess(Process process)
    {
        _process = process;
        process.OutputDataReceived += (_, e) => OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        process.EnableRaisingEvents = true;
        process.Exited += (_, _) => _listening.TrySetResult(false);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public string Output => string.Join('\n', _lines);

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    public int Pid => _process.Id;

    /// <summary>Lines of the output that contain <paramref name="text"/>.</summary>
    public int Count(string text) => _lines.Count(l => l.Contains(text, StringComparison.Ordinal));

    /// <summary>
    /// Starts <paramref name="command"/> and waits until it listens (true), exits (false), or <paramref name="timeout"/>
    /// passes (the process is stopped and a <see cref="TimeoutException"/> carries its output).
    /// </summary>
    public static async Task<(AppProcess Process, bool Listening)> StartAsync(IEnumerable<string> command, IReadOnlyDictionary<string, string>? environment,
        TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        string[] words = [.. command];
        var psi = new ProcessStartInfo(words[0])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string word in words[1..])
        {
            psi.ArgumentList.Add(word);
        }

        psi.Environment["DOTNET_NOLOGO"] = "1";
        foreach ((string name, string value) in environment ?? new Dictionary<string, string>())
        {
            psi.Environment[name] = value;
        }

        var app = new AppProcess(Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {words[0]}"));
        Task finished = await Task.WhenAny(app._listening.Task, Task.Delay(timeout, cancellationToken)).ConfigureAwait(false);
        if (finished != app._listening.Task)
        {
            app.Dispose();
            cancellationToken.ThrowIfCancellationRequested();
            throw new TimeoutException($"{string.Join(' ', words.Take(6))} ... did not start within {timeout.TotalSeconds:0} s:\n{app.Output}");
        }

        return (app, app._listening.Task.Result);
    }

    /// <summary>Finds the HelloAnycast build of this repository: <c>examples/HelloAnycast/bin/*/net10.0/HelloAnycast.dll</c>, the newest.</summary>
    public static string? FindHelloAnycast()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "MptcpAnycast.sln")))
        {
            dir = Path.GetDirectoryName(dir.TrimEnd('/'));
        }

        return dir is null
            ? null
            : new[] { "Debug", "Release" }
                .Select(c => Path.Combine(dir, "examples", "HelloAnycast", "bin", c, "net10.0", "HelloAnycast.dll"))
                .Where(File.Exists)
                .OrderByDescending(File.GetLastWriteTimeUtc)
                .FirstOrDefault();
    }

    /// <summary>Stops the app gracefully (SIGTERM) and waits for it to exit; false when it did not in time.</summary>
    public bool Stop(TimeSpan timeout)
    {
        if (_process.HasExited)
        {
            return true;
        }

        Process.Start("kill", ["-TERM", _process.Id.ToString(CultureInfo.InvariantCulture)])?.WaitForExit(5000);
        return _process.WaitForExit(timeout);
    }

    /// <summary>Kills the app (SIGKILL: a crash, no shutdown code runs).</summary>
    public void Kill()
    {
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit(10_000);
    }

    public void Dispose()
    {
        if (!Stop(TimeSpan.FromSeconds(10)))
        {
            Kill();
        }

        _process.Dispose();
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        _lines.Enqueue(line);
        if (line.Contains("Now listening on", StringComparison.Ordinal))
        {
            _listening.TrySetResult(true);
        }
    }
}
