using System.Diagnostics;
using System.Globalization;

namespace MptcpAnycast.Lab;

/// <summary>
/// A long-running child process (a POP server, curl, a load client), usually inside a namespace
/// (<c>ip netns exec NS ...</c>): its output collected line by line on threads of its own, a wait for a line it prints
/// or for its exit, and a stop with SIGTERM as systemd does. Commands that run to completion use <see cref="CommandRunner"/>.
/// </summary>
public sealed class ChildProcess : IDisposable
{
    private readonly Process _process;
    private readonly List<string> _lines = [];
    private readonly List<(string Text, TaskCompletionSource<bool> Seen)> _waiters = [];
    private readonly TaskCompletionSource _outputEnded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _openStreams = 2;

    private ChildProcess(Process process, string description)
    {
        _process = process;
        Description = description;
        ReadLinesOnOwnThread(process.StandardOutput);
        ReadLinesOnOwnThread(process.StandardError);
    }

    /// <summary>The command line, shortened, for messages.</summary>
    public string Description { get; }

    /// <summary>Everything the process printed so far (standard output and error, line by line, as they came).</summary>
    public string Output
    {
        get
        {
            lock (_lines)
            {
                return string.Join('\n', _lines);
            }
        }
    }

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    public int Pid => _process.Id;

    /// <summary>Starts <paramref name="command"/> (the program, then its arguments) with its output redirected.</summary>
    /// <param name="command">The program and its arguments, passed as they are (no shell).</param>
    /// <param name="environment">Variables to set for the child, on top of this process's own.</param>
    public static ChildProcess Start(IReadOnlyList<string> command, IReadOnlyDictionary<string, string>? environment = null)
    {
        ArgumentNullException.ThrowIfNull(command);
        if (command.Count == 0)
        {
            throw new ArgumentException("the command is empty", nameof(command));
        }

        var psi = new ProcessStartInfo(command[0])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string word in command.Skip(1))
        {
            psi.ArgumentList.Add(word);
        }

        psi.Environment["DOTNET_NOLOGO"] = "1";
        foreach ((string name, string value) in environment ?? new Dictionary<string, string>())
        {
            psi.Environment[name] = value;
        }

        string description = CommandRunner.Describe(command[0], command.Skip(1).Take(8)) + (command.Count > 9 ? " ..." : "");
        return new ChildProcess(Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {description}"), description);
    }

    /// <summary>Lines of the output that contain <paramref name="text"/>.</summary>
    public int Count(string text)
    {
        lock (_lines)
        {
            return _lines.Count(l => l.Contains(text, StringComparison.Ordinal));
        }
    }

    /// <summary>
    /// Waits until the process prints a line containing <paramref name="text"/> (true) or ends its output, i.e. exits
    /// (false). After <paramref name="timeout"/> it throws a <see cref="TimeoutException"/> with the output so far; the
    /// process keeps running (the caller disposes it).
    /// </summary>
    public async Task<bool> WaitForLineAsync(string text, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        TaskCompletionSource<bool> seen = new(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lines)
        {
            if (_lines.Any(l => l.Contains(text, StringComparison.Ordinal)))
            {
                return true;
            }

            if (_outputEnded.Task.IsCompleted)
            {
                return false;
            }

            _waiters.Add((text, seen));
        }

        try
        {
            return await seen.Task.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"{Description} did not print '{text}' within {timeout.TotalSeconds:0} s:\n{Output}");
        }
        finally
        {
            lock (_lines)
            {
                _waiters.RemoveAll(w => w.Seen == seen);
            }
        }
    }

    /// <summary>Waits until the process has exited and its output is read to the end; false when <paramref name="timeout"/> passes first.</summary>
    public async Task<bool> WaitForExitAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        try
        {
            await _outputEnded.Task.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
            await _process.WaitForExitAsync(cancellationToken).WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    /// <summary>Stops the process gracefully (SIGTERM) and waits for it to exit; false when it did not in time.</summary>
    public bool Stop(TimeSpan timeout)
    {
        if (_process.HasExited)
        {
            return true;
        }

        CommandRunner.TryRun("kill", ["-TERM", _process.Id.ToString(CultureInfo.InvariantCulture)], timeout: TimeSpan.FromSeconds(5));
        return _process.WaitForExit(timeout);
    }

    /// <summary>Kills the process (SIGKILL: a crash, no shutdown code runs).</summary>
    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }

        _process.WaitForExit(10_000);
    }

    /// <summary>Stops the process (SIGTERM, then SIGKILL after 10 s) and releases it.</summary>
    public void Dispose()
    {
        if (!Stop(TimeSpan.FromSeconds(10)))
        {
            Kill();
        }

        _process.Dispose();
    }

    private void ReadLinesOnOwnThread(StreamReader reader) =>
        Task.Factory.StartNew(() =>
        {
            try
            {
                while (reader.ReadLine() is string line)
                {
                    OnLine(line);
                }
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException)
            {
                // The pipe went away with the process.
            }
            finally
            {
                OnStreamEnded();
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    private void OnLine(string line)
    {
        lock (_lines)
        {
            _lines.Add(line);
            foreach ((string text, TaskCompletionSource<bool> seen) in _waiters)
            {
                if (line.Contains(text, StringComparison.Ordinal))
                {
                    seen.TrySetResult(true);
                }
            }
        }
    }

    private void OnStreamEnded()
    {
        lock (_lines)
        {
            if (--_openStreams > 0)
            {
                return;
            }

            foreach ((_, TaskCompletionSource<bool> seen) in _waiters)
            {
                seen.TrySetResult(false);
            }

            _outputEnded.TrySetResult();
        }
    }
}
