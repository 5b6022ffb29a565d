using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;

namespace MptcpAnycast.Cli.Lab;

/// <summary>HelloAnycast on the MPTCP anycast transport, running inside one POP of the lab.</summary>
internal sealed class PopServer : IDisposable
{
    public const int Port = 8080;

    private readonly Process _process;
    private readonly ConcurrentQueue<string> _lines = new();
    private readonly TaskCompletionSource<bool> _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private PopServer(LabPop pop, Process process)
    {
        Pop = pop;
        _process = process;
        process.OutputDataReceived += (_, e) => OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        process.EnableRaisingEvents = true;
        process.Exited += (_, _) => _listening.TrySetResult(false);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public LabPop Pop { get; }

    public string Output => string.Join('\n', _lines);

    public bool HasExited => _process.HasExited;

    /// <summary>Lines of the server's log that contain <paramref name="text"/>.</summary>
    public int Count(string text) => _lines.Count(l => l.Contains(text, StringComparison.Ordinal));

    /// <summary>The transport's arguments for this POP: its unicast addresses, the lab's anycast addresses.</summary>
    public static List<string> Arguments(LabTopology lab, LabPop pop, string? afterJoin, IEnumerable<string>? extra)
    {
        var args = new List<string>
        {
            "--urls", $"http://[::]:{Port.ToString(CultureInfo.InvariantCulture)}",
            "--Pop", pop.Id == LabPopId.A ? "pop-a" : "pop-b",
            "--MptcpAnycast:Mode", lab.Options.PathManager == LabPathManager.Userspace ? "Userspace" : "Kernel",
            "--MptcpAnycast:AnycastAddresses:0", lab.Plan.Anycast4,
            "--MptcpAnycast:AnycastAddresses:1", lab.Plan.Anycast6,
            "--MptcpAnycast:JoinTimeout", "00:00:02",
            "--Logging:LogLevel:MptcpAnycast", "Debug",
            "--Logging:Console:FormatterName", "simple",
        };
        for (int i = 0; i < pop.Announced.Count; i++)
        {
            args.Add($"--MptcpAnycast:UnicastAddresses:{i.ToString(CultureInfo.InvariantCulture)}");
            args.Add(pop.Announced[i].ToString());
        }

        if (afterJoin is not null)
        {
            args.Add("--MptcpAnycast:AfterJoin");
            args.Add(afterJoin);
        }

        args.AddRange(extra ?? []);
        return args;
    }

    /// <summary>Starts the app in the POP's namespace and waits until it listens (or fails: then it throws with its output).</summary>
    public static async Task<PopServer> StartAsync(LabTopology lab, LabPop pop, string appPath, string? afterJoin = null,
        IEnumerable<string>? extra = null, CancellationToken cancellationToken = default)
    {
        var psi = new ProcessStartInfo("ip")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in new[] { "netns", "exec", pop.Namespace, "dotnet", appPath }.Concat(Arguments(lab, pop, afterJoin, extra)))
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["DOTNET_NOLOGO"] = "1";
        var server = new PopServer(pop, Process.Start(psi) ?? throw new InvalidOperationException("cannot start ip netns exec"));
        Task finished = await Task.WhenAny(server._listening.Task, Task.Delay(TimeSpan.FromSeconds(60), cancellationToken)).ConfigureAwait(false);
        if (finished != server._listening.Task || !server._listening.Task.Result)
        {
            string output = server.Output;
            server.Dispose();
            throw new InvalidOperationException($"HelloAnycast did not start in {pop.Namespace}:\n{output}");
        }

        return server;
    }

    /// <summary>Finds the HelloAnycast build next to this repository's tool: <c>examples/HelloAnycast/bin/*/net10.0/HelloAnycast.dll</c>.</summary>
    public static string? FindApp()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "MptcpAnycast.sln")))
        {
            dir = Path.GetDirectoryName(dir.TrimEnd('/'));
        }

        if (dir is null)
        {
            return null;
        }

        return new[] { "Debug", "Release" }
            .Select(c => Path.Combine(dir, "examples", "HelloAnycast", "bin", c, "net10.0", "HelloAnycast.dll"))
            .Where(File.Exists)
            .OrderByDescending(File.GetLastWriteTimeUtc)
            .FirstOrDefault();
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            Process.Start("kill", ["-TERM", _process.Id.ToString(CultureInfo.InvariantCulture)])?.WaitForExit(5000);
            if (!_process.WaitForExit(10_000))
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit(5000);
            }
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
