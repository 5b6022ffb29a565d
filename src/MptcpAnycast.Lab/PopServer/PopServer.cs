using System.Globalization;

namespace MptcpAnycast.Lab;

/// <summary>
/// The POP server (<see cref="PopServerApp"/>) running as its own process inside a namespace:
/// <c>ip netns exec NS [WRAPPER] TOOL lab serve OPTIONS</c>, started when it logs "Now listening on".
/// </summary>
public sealed class PopServer : IDisposable
{
    /// <summary>The port the lab's POP servers listen on.</summary>
    public const int Port = 8080;

    /// <summary>How long a server may take to start (a cold <c>dotnet</c> on a busy 2-core machine takes seconds).</summary>
    public static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);

    private readonly ChildProcess _process;

    private PopServer(ChildProcess process, LabPop? pop)
    {
        _process = process;
        Pop = pop;
    }

    /// <summary>The lab POP it serves, when it was started for one (<see cref="StartAsync(LabTopology, LabPop, ToolCommand, string?, IEnumerable{string}?, CancellationToken)"/>).</summary>
    public LabPop? Pop { get; }

    public string Output => _process.Output;

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    public int Pid => _process.Pid;

    /// <summary>Lines of the server's log that contain <paramref name="text"/>.</summary>
    public int Count(string text) => _process.Count(text);

    /// <summary>The transport's arguments for a POP of the anycast lab: its unicast addresses, the lab's anycast addresses.</summary>
    public static List<string> Arguments(LabTopology lab, LabPop pop, string? afterJoin, IEnumerable<string>? extra)
    {
        ArgumentNullException.ThrowIfNull(lab);
        ArgumentNullException.ThrowIfNull(pop);
        var args = new List<string>
        {
            "--urls", $"http://[::]:{Port.ToString(CultureInfo.InvariantCulture)}",
            "--Pop", "pop-" + LabNames.Of(pop.Id),
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

    /// <summary>Starts the server in a POP of the anycast lab and waits until it listens; throws with its output when it does not.</summary>
    public static async Task<PopServer> StartAsync(LabTopology lab, LabPop pop, ToolCommand tool, string? afterJoin = null,
        IEnumerable<string>? extra = null, CancellationToken cancellationToken = default)
    {
        PopServer server = await StartAsync(pop.Namespace, tool, Arguments(lab, pop, afterJoin, extra), pop: pop, cancellationToken: cancellationToken).ConfigureAwait(false);
        if (server.HasExited)
        {
            string output = server.Output;
            server.Dispose();
            throw new InvalidOperationException($"the POP server did not start in {pop.Namespace}:\n{output}");
        }

        return server;
    }

    /// <summary>
    /// Starts <c>TOOL lab serve ARGUMENTS</c> in <paramref name="ns"/> and returns once it listens, or once it has exited
    /// (a refused start: see <see cref="HasExited"/> and <see cref="Output"/>). Throws a <see cref="TimeoutException"/>
    /// with its output when it does neither within <see cref="StartTimeout"/>.
    /// </summary>
    /// <param name="ns">Where to run.</param>
    /// <param name="tool">How to start the tool (<see cref="ToolCommand.OfThisProcess"/> from the tool itself).</param>
    /// <param name="arguments">The server's own options (<see cref="PopServerApp"/>).</param>
    /// <param name="wrapper">A command that runs the server, such as <c>setpriv</c> with its options.</param>
    /// <param name="environment">Variables to set for the server.</param>
    /// <param name="pop">The lab POP it serves, if any.</param>
    /// <param name="cancellationToken">Stops the wait (and the server).</param>
    public static async Task<PopServer> StartAsync(LabNamespace ns, ToolCommand tool, IEnumerable<string> arguments, IEnumerable<string>? wrapper = null,
        IReadOnlyDictionary<string, string>? environment = null, LabPop? pop = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(ns);
        ArgumentNullException.ThrowIfNull(tool);
        // Server GC, as an ASP.NET Core app has by default (the tool itself is a console app).
        var variables = new Dictionary<string, string> { ["DOTNET_gcServer"] = "1" };
        foreach ((string name, string value) in environment ?? new Dictionary<string, string>())
        {
            variables[name] = value;
        }

        ChildProcess process = ns.Start([.. wrapper ?? [], .. tool.With(["lab", "serve", .. arguments])], variables);
        try
        {
            if (!await process.WaitForLineAsync("Now listening on", StartTimeout, cancellationToken).ConfigureAwait(false))
            {
                await process.WaitForExitAsync(TimeSpan.FromSeconds(10), cancellationToken).ConfigureAwait(false); // its output ended: it is exiting
            }

            return new PopServer(process, pop);
        }
        catch
        {
            process.Dispose();
            throw;
        }
    }

    /// <summary>Stops the server gracefully (SIGTERM, as systemd does) and waits for it to exit; false when it did not in time.</summary>
    public bool Stop(TimeSpan timeout) => _process.Stop(timeout);

    /// <summary>Kills the server (SIGKILL: a crash, no shutdown code runs).</summary>
    public void Kill() => _process.Kill();

    public void Dispose() => _process.Dispose();
}
