using System.Globalization;

namespace MptcpAnycast.Cli.Lab;

/// <summary>HelloAnycast on the MPTCP anycast transport, running inside one POP of the lab.</summary>
internal sealed class PopServer : IDisposable
{
    public const int Port = 8080;

    private readonly AppProcess _app;

    private PopServer(LabPop pop, AppProcess app)
    {
        Pop = pop;
        _app = app;
    }

    public LabPop Pop { get; }

    public string Output => _app.Output;

    public bool HasExited => _app.HasExited;

    /// <summary>Lines of the server's log that contain <paramref name="text"/>.</summary>
    public int Count(string text) => _app.Count(text);

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
        (AppProcess app, bool listening) = await AppProcess.StartAsync(
            ["ip", "netns", "exec", pop.Namespace, "dotnet", appPath, .. Arguments(lab, pop, afterJoin, extra)], null, TimeSpan.FromSeconds(60),
            cancellationToken).ConfigureAwait(false);
        if (!listening)
        {
            string output = app.Output;
            app.Dispose();
            throw new InvalidOperationException($"HelloAnycast did not start in {pop.Namespace}:\n{output}");
        }

        return new PopServer(pop, app);
    }

    /// <inheritdoc cref="AppProcess.FindHelloAnycast"/>
    public static string? FindApp() => AppProcess.FindHelloAnycast();

    public void Dispose() => _app.Dispose();
}
