using System.Text.Json;
using MptcpAnycast.Cli.CommandLine;
using MptcpAnycast.Lab;

namespace MptcpAnycast.Cli.Commands;

/// <summary>
/// <c>mptcp-anycast lab demo|measure|up|flip|status|down ...</c>: the anycast lab in network namespaces (root only), and
/// the hidden <c>lab serve ...</c> that the lab starts in each POP (its POP server). Only argument parsing and wiring:
/// the lab itself is <c>MptcpAnycast.Lab</c>. Exit 0 done, 1 refused or failed, 2 bad arguments.
/// </summary>
/// <param name="isRoot">Whether this process may build labs.</param>
/// <param name="tool">How to start this tool again, for the POP servers (<see cref="ToolCommand.OfThisProcess"/>).</param>
internal sealed class LabCommand(Func<bool> isRoot, Func<ToolCommand> tool)
{
    public const string Usage =
        "lab demo [lab up options except --pops and --rescue] [--no-rescue] [--seconds S] [--rate BYTES] [--flip-after S] [--after-join keep-both|prefer-unicast|migrate-to-unicast] [--no-curl] | " +
        "lab measure [lab up options except --pops] [--flips N] [--requests] [--no-flip] [--rate BYTES] [--after-join POLICY] | " +
        "lab up [--prefix P] [--pops 2|3] [--rescue] [--unicast own|shared-ipv4|ipv6-only] [--client accept-add-addr|subflow-endpoint|defaults] " +
        "[--path-manager kernel|userspace] [--nat] [--firewall] [--strip-mptcp] | lab flip [--prefix P] [--to a|b|c] | lab status|down [--prefix P]";

    private static readonly HashSet<string> UpFlags = ["--nat", "--firewall", "--strip-mptcp"];
    private static readonly HashSet<string> UpValued = ["--prefix", "--unicast", "--client", "--path-manager"];

    // demo and measure run their POP servers in A and B and flip between them, so only lab up takes --pops.
    private static readonly HashSet<string> UpOwnValued = [.. UpValued, "--pops"];
    private static readonly HashSet<string> UpOwnFlags = [.. UpFlags, "--rescue"];
    private static readonly HashSet<string> NoFlags = [];
    private static readonly HashSet<string> PrefixOnly = ["--prefix"];
    private static readonly HashSet<string> FlipValued = ["--prefix", "--to"];

    private const string RootRefusal =
        "mptcp-anycast lab: refused: the lab makes network namespaces, veth links and routes, which needs root. Run it as root (sudo mptcp-anycast lab ...).";

    /// <summary>The tool as installed or run: root decides, the POP servers are this process's own command line.</summary>
    public static LabCommand ForThisProcess() => new(() => Environment.IsPrivilegedProcess, ToolCommand.OfThisProcess);

    public Task<int> RunAsync(string[] args, TextWriter output)
    {
        string verb = args.Length > 0 && !args[0].StartsWith('-') ? args[0] : throw new UsageException("say what to do: demo, measure, up, flip, status or down");
        string[] rest = args[1..];
        switch (verb)
        {
            case "demo":
                return DemoAsync(rest, output);
            case "measure":
                return MeasureAsync(rest, output);
            case "serve":
                return ServeAsync(rest, output);
        }

        Func<int> run = verb switch
        {
            "up" => Prepare(rest, UpOwnFlags, UpOwnValued, reader =>
            {
                bool rescue = reader.Flag("--rescue");
                return () => Up(ReadOptions(reader), rescue, output);
            }),
            "flip" => Prepare(rest, NoFlags, FlipValued, reader =>
            {
                // Read before the root check, so a misspelt POP is a usage error wherever it runs.
                LabPopId? to = reader.Value("--to") is string text ? Named(reader, "--to", LabPopId.A) : null;
                return () => Flip(reader.Value("--prefix"), to, reader.Value("--to"), output);
            }),
            "status" => Prepare(rest, NoFlags, PrefixOnly, reader => () => Status(reader.Value("--prefix"), output)),
            "down" => Prepare(rest, NoFlags, PrefixOnly, reader => () => Down(reader.Value("--prefix"), output)),
            _ => throw new UsageException($"unknown lab command '{verb}' (demo, measure, up, flip, status, down)"),
        };

        if (!isRoot())
        {
            output.WriteLine(RootRefusal);
            return Task.FromResult(1);
        }

        try
        {
            return Task.FromResult(run());
        }
        catch (Exception ex) when (ex is InvalidOperationException or TimeoutException or IOException or UnauthorizedAccessException
            or System.ComponentModel.Win32Exception)
        {
            // A command that failed (its output is in the message), a missing tool, or an unwritable state file.
            output.WriteLine($"mptcp-anycast lab {verb}: {ex.Message}");
            return Task.FromResult(1);
        }
    }

    private static readonly HashSet<string> DemoFlags = [.. UpFlags, "--no-curl", "--no-rescue"];
    private static readonly HashSet<string> DemoValued = [.. UpValued, "--seconds", "--rate", "--flip-after", "--after-join"];

    private async Task<int> DemoAsync(string[] args, TextWriter output)
    {
        var reader = new ArgumentReader(args, DemoFlags, DemoValued);
        reader.NoPositional();
        LabOptions options = ReadOptions(reader, LabPathManager.Userspace);
        int seconds = reader.Int("--seconds", 2, 600) ?? 10;
        var settings = new DemoSettings
        {
            Seconds = seconds,
            Rate = reader.Int("--rate", 1024, 64 * 1024 * 1024) ?? 128 * 1024,
            FlipAfter = reader.Int("--flip-after", 1, seconds - 1) ?? Math.Min(4, seconds / 2),
            AfterJoin = reader.Value("--after-join") is string policy ? AfterJoinName(policy) : null,
            Curl = !reader.Flag("--no-curl"),
            Rescue = !reader.Flag("--no-rescue"),
        };
        if (!isRoot())
        {
            output.WriteLine(RootRefusal);
            return 1;
        }

        return await RunInterruptibleAsync("demo", output, token => LabDemo.RunAsync(options, settings, tool(), output, token)).ConfigureAwait(false);
    }

    /// <summary>
    /// <c>lab serve [OPTIONS]</c>: the POP server, until SIGTERM or Ctrl-C. Not root only: the lab starts it in a POP's
    /// namespace, and an operator may run it with just <c>CAP_NET_ADMIN</c>.
    /// </summary>
    private static async Task<int> ServeAsync(string[] args, TextWriter output)
    {
        if (PopServerApp.CheckArguments(args) is string problem)
        {
            throw new UsageException(problem);
        }

        try
        {
            await PopServerApp.RunAsync(args).ConfigureAwait(false);
            return 0;
        }
        catch (Exception ex) when (ex is MptcpAnycast.Kestrel.MptcpAnycastConfigurationException or Microsoft.Extensions.Options.OptionsValidationException
            or IOException or InvalidOperationException or System.Net.Sockets.SocketException or UnauthorizedAccessException)
        {
            // Refused to start: a bad transport option (the message names the setting and the value), an address in use.
            output.WriteLine($"mptcp-anycast lab serve: {ex.Message}");
            return 1;
        }
    }

    /// <summary>
    /// Runs a long lab command so that Ctrl-C cancels it instead of killing the process (it then removes its lab), and
    /// a failed step becomes one line and exit code 1.
    /// </summary>
    private static async Task<int> RunInterruptibleAsync(string verb, TextWriter output, Func<CancellationToken, Task<int>> run)
    {
        using var cancel = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true; // let the command tear its lab down
            cancel.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        try
        {
            return await run(cancel.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested)
        {
            output.WriteLine($"mptcp-anycast lab {verb}: interrupted; the lab was removed.");
            return 1;
        }
        catch (Exception ex) when (ex is OperationCanceledException or InvalidOperationException or TimeoutException or IOException
            or System.Net.Sockets.SocketException or System.ComponentModel.Win32Exception or JsonException)
        {
            output.WriteLine($"mptcp-anycast lab {verb}: {ex.Message}");
            return 1;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    private static readonly HashSet<string> MeasureFlags = [.. UpFlags, "--requests", "--no-flip"];
    private static readonly HashSet<string> MeasureValued = [.. UpValued, "--flips", "--rate", "--after-join"];

    private async Task<int> MeasureAsync(string[] args, TextWriter output)
    {
        var reader = new ArgumentReader(args, MeasureFlags, MeasureValued);
        reader.NoPositional();
        LabOptions options = ReadOptions(reader, LabPathManager.Userspace);
        int flips = reader.Int("--flips", 1, 500) ?? 20;
        long rate = reader.Int("--rate", 1024, 64 * 1024 * 1024) ?? 128 * 1024;
        string? afterJoin = reader.Value("--after-join") is string policy ? AfterJoinName(policy) : null;
        bool requests = reader.Flag("--requests"), noFlip = reader.Flag("--no-flip");
        if (!isRoot())
        {
            output.WriteLine(RootRefusal);
            return 1;
        }

        return await RunInterruptibleAsync("measure", output, token => LabMeasure.RunAsync(options, afterJoin, flips, requests, rate,
            tool(), output, token, noFlip: noFlip)).ConfigureAwait(false);
    }

    private static string AfterJoinName(string value) => value switch
    {
        "keep-both" => "KeepBoth",
        "prefer-unicast" => "PreferUnicast",
        "migrate-to-unicast" => "MigrateToUnicast",
        _ => throw new UsageException($"option '--after-join' must be one of keep-both|prefer-unicast|migrate-to-unicast (got '{value}')"),
    };

    internal static LabOptions ReadOptions(ArgumentReader reader) => ReadOptions(reader, LabPathManager.Kernel);

    internal static LabOptions ReadOptions(ArgumentReader reader, LabPathManager defaultPathManager)
    {
        var options = new LabOptions
        {
            Nat = reader.Flag("--nat"),
            Firewall = reader.Flag("--firewall"),
            StripMptcp = reader.Flag("--strip-mptcp"),
            Pops = reader.Int("--pops", LabOptions.MinPops, LabOptions.MaxPops) ?? LabOptions.MinPops,
            Unicast = Named(reader, "--unicast", LabUnicast.Own),
            Client = Named(reader, "--client", LabClientLimits.AcceptAddAddr),
            PathManager = Named(reader, "--path-manager", defaultPathManager),
        };
        if (reader.Value("--prefix") is string prefix)
        {
            options = options with { Prefix = CheckPrefix(prefix) };
        }

        return options;
    }

    private static Func<int> Prepare(string[] args, HashSet<string> flags, HashSet<string> valued, Func<ArgumentReader, Func<int>> make)
    {
        var reader = new ArgumentReader(args, flags, valued);
        reader.NoPositional();
        if (reader.Value("--prefix") is string prefix)
        {
            CheckPrefix(prefix);
        }

        return make(reader);
    }

    private int Up(LabOptions options, bool rescue, TextWriter output)
    {
        LabTopology lab = LabTopology.Up(options);
        if (rescue)
        {
            try
            {
                LabRescue.StartAsync(lab, tool(), detached: true).GetAwaiter().GetResult().Dispose();
            }
            catch
            {
                lab.Down();
                throw;
            }
        }

        output.WriteLine($"lab {options.Prefix} is up: {options}");
        output.WriteLine($"  client  {lab.Client.Name,-24} {lab.Plan.Client4}, {lab.Plan.Client6}");
        output.WriteLine($"  router  {lab.Router.Name,-24} anycast {lab.Plan.Anycast4}, {lab.Plan.Anycast6} -> POP {lab.Active}");
        foreach (LabPop pop in lab.Pops)
        {
            output.WriteLine($"  POP {pop.Id}   {pop.Namespace.Name,-24} {pop.Link4}, {pop.Link6}; announces {(pop.Announced.Count == 0 ? "nothing" : string.Join(", ", pop.Announced))}");
        }

        if (lab.StripMechanism is not null)
        {
            output.WriteLine($"  MPTCP option stripped on the router with: {lab.StripMechanism}");
        }

        if (rescue)
        {
            output.WriteLine($"  rescue agent running in every POP until lab down (status: mptcp-anycast rescue status --dir {LabRescue.StatusDirectoryOf(options.Prefix)}; logs in {LabRescue.DirectoryOf(options.Prefix)})");
        }

        string choose = lab.Pops.Count > LabOptions.MinPops ? $" [--to {string.Join("|", lab.Pops.Select(p => LabNames.Of(p.Id)))}]" : "";
        output.WriteLine($"Run a command inside: ip netns exec {lab.Client.Name} <command>. Next: mptcp-anycast lab flip --prefix {options.Prefix}{choose}");
        return 0;
    }

    /// <summary>
    /// <c>lab flip</c>: to POP <paramref name="to"/>, or without it to the next POP (A → B → C → A). A POP the lab does not
    /// have is a usage error (exit 2) that names <paramref name="toText"/>; the POP already active changes nothing (exit 0).
    /// </summary>
    private static int Flip(string? prefix, LabPopId? to, string? toText, TextWriter output)
    {
        LabTopology lab = Existing(prefix);
        LabPopId from = lab.Active;
        string anycast = $"{lab.Plan.Anycast4}, {lab.Plan.Anycast6}";
        if (to is LabPopId target)
        {
            if (!lab.HasPop(target))
            {
                string pops = string.Join("|", lab.Pops.Select(p => LabNames.Of(p.Id)));
                throw new UsageException($"option '--to' must be one of {pops} for lab {lab.Options.Prefix}, which has {lab.Pops.Count} POPs (got '{toText}')");
            }

            if (!lab.FlipTo(target))
            {
                output.WriteLine($"lab {lab.Options.Prefix}: anycast {anycast} already points at POP {target}; nothing changed");
                return 0;
            }
        }
        else
        {
            lab.Flip();
        }

        output.WriteLine($"lab {lab.Options.Prefix}: anycast {anycast} moved from POP {from} to POP {lab.Active}");
        return 0;
    }

    private static int Status(string? prefix, TextWriter output)
    {
        output.Write(Existing(prefix).Status());
        return 0;
    }

    private static int Down(string? prefix, TextWriter output)
    {
        IReadOnlyList<string> prefixes = prefix is not null ? [prefix] : LabState.Prefixes();
        if (prefixes.Count > 1)
        {
            throw new UsageException($"several labs exist ({string.Join(", ", prefixes)}): choose one with --prefix");
        }

        if (prefixes.Count == 0)
        {
            output.WriteLine("no lab to remove");
            return 0;
        }

        IReadOnlyList<string> removed = LabTopology.Down(prefixes[0]);
        output.WriteLine(removed.Count == 0
            ? $"lab {prefixes[0]}: nothing left to remove"
            : $"lab {prefixes[0]}: removed {string.Join(", ", removed)}");
        return 0;
    }

    private static LabTopology Existing(string? prefix)
    {
        if (prefix is null)
        {
            IReadOnlyList<string> prefixes = LabState.Prefixes();
            prefix = prefixes.Count switch
            {
                0 => throw new InvalidOperationException("no lab is up; start one with 'mptcp-anycast lab up'"),
                1 => prefixes[0],
                _ => throw new UsageException($"several labs exist ({string.Join(", ", prefixes)}): choose one with --prefix"),
            };
        }

        return LabTopology.Load(prefix) ?? throw new InvalidOperationException($"no lab with prefix '{prefix}' (no {LabState.PathFor(prefix)}); start one with 'mptcp-anycast lab up --prefix {prefix}'");
    }

    private static string CheckPrefix(string prefix) =>
        LabOptions.ValidatePrefix(prefix) is string problem ? throw new UsageException(problem) : prefix;

    private static T Named<T>(ArgumentReader reader, string option, T defaultValue) where T : struct, Enum
    {
        string? text = reader.Value(option);
        if (text is null)
        {
            return defaultValue;
        }

        return LabNames.TryParse(text, out T value)
            ? value
            : throw new UsageException($"option '{option}' must be one of {LabNames.All<T>()} (got '{text}')");
    }
}
