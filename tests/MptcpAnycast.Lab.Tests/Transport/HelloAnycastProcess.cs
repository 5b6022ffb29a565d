using MptcpAnycast.Cli.Lab;

namespace MptcpAnycast.Lab.Tests.Transport;

/// <summary>The HelloAnycast example app running inside a network namespace, as an operator would run it.</summary>
public sealed class HelloAnycastProcess : IDisposable
{
    private readonly AppProcess _app;

    private HelloAnycastProcess(AppProcess app) => _app = app;

    public string Output => _app.Output;

    public bool HasExited => _app.HasExited;

    public int ExitCode => _app.ExitCode;

    public int Pid => _app.Pid;

    /// <summary>Lines of the output that contain <paramref name="text"/>.</summary>
    public int Count(string text) => _app.Count(text);

    public static string AppPath => AppProcess.FindHelloAnycast() ?? throw new FileNotFoundException("build the solution first: HelloAnycast.dll not found");

    public static Task<HelloAnycastProcess> StartAsync(string namespaceName, string pop, params string[] args)
        => StartAsync(namespaceName, pop, [], args);

    /// <summary>Starts the app in <paramref name="namespaceName"/>; returns once it listens (or has exited: check <see cref="HasExited"/>).</summary>
    /// <param name="namespaceName">Where to run.</param>
    /// <param name="pop">The POP name the app reports.</param>
    /// <param name="wrapper">A command that runs the app, such as <c>setpriv</c> with its options.</param>
    /// <param name="args">The app's own arguments.</param>
    public static async Task<HelloAnycastProcess> StartAsync(string namespaceName, string pop, string[] wrapper, string[] args)
    {
        string[] command =
        [
            "ip", "netns", "exec", namespaceName, .. wrapper, "dotnet", AppPath,
            "--Pop", pop, "--Logging:LogLevel:MptcpAnycast", "Debug", "--Logging:Console:FormatterName", "simple", .. args,
        ];
        var environment = new Dictionary<string, string>
        {
            ["ASPNETCORE_ENVIRONMENT"] = "Production",
            ["DOTNET_CLI_HOME"] = Path.GetTempPath(),
            ["HOME"] = Path.GetTempPath(),
        };
        (AppProcess app, _) = await AppProcess.StartAsync(command, environment, TimeSpan.FromSeconds(60));
        return new HelloAnycastProcess(app);
    }

    /// <summary>Stops the app gracefully (SIGTERM, as systemd does) and waits for it to exit.</summary>
    public bool Stop(TimeSpan timeout) => _app.Stop(timeout);

    /// <summary>Kills the app (SIGKILL: a crash, no shutdown code runs).</summary>
    public void Kill() => _app.Kill();

    public void Dispose() => _app.Dispose();
}
