using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;

namespace MptcpAnycast.Lab.Tests.Transport;

/// <summary>The HelloAnycast example app running inside a network namespace, as an operator would run it.</summary>
public sealed class HelloAnycastProcess : IDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _output = new();
    private readonly TaskCompletionSource<bool> _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private HelloAnycastProcess(Process process)
    {
        _process = process;
        process.OutputDataReceived += (_, e) => OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        process.EnableRaisingEvents = true;
        process.Exited += (_, _) => _listening.TrySetResult(false);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public string Output => string.Join('\n', _output);

    public bool HasExited => _process.HasExited;

    public int Pid => _process.Id;

    public int ExitCode => _process.ExitCode;

    public static string AppPath
    {
        get
        {
            string dir = AppContext.BaseDirectory;
            while (!File.Exists(Path.Combine(dir, "MptcpAnycast.sln")))
            {
                dir = Path.GetDirectoryName(dir.TrimEnd('/')) ?? throw new InvalidOperationException("repository root not found");
            }

#if DEBUG
            const string Configuration = "Debug";
#else
            const string Configuration = "Release";
#endif
            string path = Path.Combine(dir, "examples", "HelloAnycast", "bin", Configuration, "net10.0", "HelloAnycast.dll");
            return File.Exists(path) ? path : throw new FileNotFoundException("build the solution first", path);
        }
    }

    /// <summary>Starts the app in <paramref name="namespaceName"/>; returns once it listens (or has exited: check <see cref="HasExited"/>).</summary>
    public static Task<HelloAnycastProcess> StartAsync(string namespaceName, string pop, params string[] args)
        => StartAsync(namespaceName, pop, [], args);

    /// <param name="namespaceName">Where to run.</param>
    /// <param name="pop">The POP name the app reports.</param>
    /// <param name="wrapper">A command that runs the app, such as <c>setpriv</c> with its options.</param>
    /// <param name="args">The app's own arguments.</param>
    public static async Task<HelloAnycastProcess> StartAsync(string namespaceName, string pop, string[] wrapper, string[] args)
    {
        var psi = new ProcessStartInfo("ip")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in new[] { "netns", "exec", namespaceName }.Concat(wrapper).Concat(new[] { "dotnet", AppPath, "--Pop", pop, "--Logging:LogLevel:MptcpAnycast", "Debug", "--Logging:Console:FormatterName", "simple" }).Concat(args))
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["DOTNET_NOLOGO"] = "1";
        psi.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        psi.Environment["DOTNET_CLI_HOME"] = Path.GetTempPath();
        psi.Environment["HOME"] = Path.GetTempPath();
        var process = new HelloAnycastProcess(Process.Start(psi)!);
        Task finished = await Task.WhenAny(process._listening.Task, Task.Delay(TimeSpan.FromSeconds(60)));
        if (finished != process._listening.Task)
        {
            process.Dispose();
            throw new TimeoutException($"HelloAnycast did not start within 60 s:\n{process.Output}");
        }

        return process;
    }

    /// <summary>Stops the app gracefully (SIGTERM, as systemd does) and waits for it to exit.</summary>
    public bool Stop(TimeSpan timeout)
    {
        if (_process.HasExited)
        {
            return true;
        }

        Process.Start("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])?.WaitForExit(5000);
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
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit(5000);
        }

        _process.Dispose();
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        _output.Enqueue(line);
        if (line.Contains("Now listening on", StringComparison.Ordinal))
        {
            _listening.TrySetResult(true);
        }
    }
}
