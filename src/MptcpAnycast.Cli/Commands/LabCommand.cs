using System.CommandLine;
using System.Text.Json;
using MptcpAnycast.Cli.CommandLine;
using MptcpAnycast.Kestrel;
using MptcpAnycast.Lab;

namespace MptcpAnycast.Cli.Commands;

/// <summary>
/// <c>mptcp-anycast lab demo|measure|up|flip|status|down ...</c>: the anycast lab in network namespaces (root only), and
/// the hidden <c>lab serve ...</c> that the lab starts in each POP (its POP server). Only the command line and the
/// wiring: each handler is a call into <c>MptcpAnycast.Lab</c>. Exit 0 done, 1 refused or failed, 2 bad arguments.
/// </summary>
/// <param name="isRoot">Whether this process may build labs.</param>
/// <param name="tool">How to start this tool again, for the POP servers (<see cref="ToolCommand.OfThisProcess"/>).</param>
internal sealed class LabCommand(Func<bool> isRoot, Func<ToolCommand> tool)
{
    private const int DefaultDemoSeconds = 10;

    private const string RootRefusal =
        "mptcp-anycast lab: refused: the lab makes network namespaces, veth links and routes, which needs root. Run it as root (sudo mptcp-anycast lab ...).";

    /// <summary>The tool as installed or run: root decides, the POP servers are this process's own command line.</summary>
    public static LabCommand ForThisProcess() => new(() => Environment.IsPrivilegedProcess, ToolCommand.OfThisProcess);

    /// <summary><c>mptcp-anycast lab ARGS</c> with this lab command; what goes to stdout and to stderr both go to <paramref name="output"/>.</summary>
    public Task<int> RunAsync(string[] args, TextWriter output) => Program.RunAsync(["lab", .. args], output, output, this);

    public Command Create() => new("lab",
        "The anycast lab in network namespaces, root only. A client, a router and POPs A and B (and C with lab up --pops 3), " +
        "the anycast address on every POP; flip moves its route from one POP to another.")
    {
        Demo(),
        Measure(),
        Up(),
        Flip(),
        Status(),
        Down(),
        Serve(),
    };

    private Command Demo()
    {
        var shape = new LabShapeOptions(LabPathManager.Userspace, pops: false);
        Option<bool> noRescue = ToolOptions.Flag("--no-rescue",
            "Do not run the rescue agent in the POPs: the plain TCP client then dies at the flip, as without MptcpAnycast.");
        Option<int> seconds = ToolOptions.Int("--seconds", "seconds", "How long each client streams.", 2, 600, DefaultDemoSeconds);
        Option<int> rate = Rate();
        Option<int?> flipAfter = ToolOptions.OptionalInt("--flip-after", "seconds",
            "When the anycast route moves to POP B, in seconds after the streams start; less than --seconds, so that the flip " +
            "happens while the clients stream.", 1, 599, "4, or half of --seconds when that is less");
        ChoiceOption<AfterJoinPolicy> afterJoin = AfterJoin();
        Option<bool> noCurl = ToolOptions.Flag("--no-curl", "Do not run the third client: curl --mptcp (curl 8.9+) or mptcpize run curl, when either is installed.");
        Option<string?> plot = ToolOptions.Text("--plot", "file",
            "Also draw bytes received over time for each client, with the flip marked, into this file: PNG, or SVG when the name ends in .svg.",
            "no picture");
        plot.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<string?>() is string path && DemoPlot.ValidatePath(path) is string problem)
            {
                result.AddError(problem);
            }
        });
        var demo = new Command("demo",
            "The main demo: builds the lab, runs the POP server in POPs A and B, streams to an MPTCP client, a plain TCP client " +
            "and curl, moves the anycast route to POP B mid-stream and tells who survived; removes the lab at the end. " +
            "Exit 0 when the MPTCP client (and, with rescue, the TCP client) survived.")
        {
            noRescue,
            seconds,
            rate,
            flipAfter,
            afterJoin,
            noCurl,
            plot,
        };
        shape.AddTo(demo);
        demo.Validators.Add(result =>
        {
            // Command validators run before the options' defaults are filled in: an absent --seconds is its default.
            // A --seconds that failed its own check has its own error; the flip is then not judged against it.
            bool hasSeconds = ToolOptions.TryGetValue(result, seconds, out int s);
            if (!hasSeconds && result.GetResult(seconds) is not null)
            {
                return;
            }

            s = hasSeconds ? s : DefaultDemoSeconds;
            if (ToolOptions.TryGetValue(result, flipAfter, out int? f) && f >= s)
            {
                result.AddError($"option '--flip-after' must be a whole number from 1 to {s - 1}: the flip must happen while the clients stream, before --seconds {s} (got '{f}')");
            }
        });
        demo.SetAction(async (parse, _) =>
        {
            LabOptions options = shape.Read(parse);
            int s = parse.GetValue(seconds);
            var settings = new DemoSettings
            {
                Seconds = s,
                Rate = parse.GetValue(rate),
                FlipAfter = parse.GetValue(flipAfter) ?? Math.Min(4, s / 2),
                AfterJoin = afterJoin.Get(parse)?.ToString(),
                Curl = !parse.GetValue(noCurl),
                Rescue = !parse.GetValue(noRescue),
                PlotPath = parse.GetValue(plot),
            };
            return await RunAsRootAsync(parse, "demo", token => LabDemo.RunAsync(options, settings, tool(), parse.InvocationConfiguration.Output, token)).ConfigureAwait(false);
        });
        return demo;
    }

    private Command Measure()
    {
        var shape = new LabShapeOptions(LabPathManager.Userspace, pops: false);
        Option<int> flips = ToolOptions.Int("--flips", "count", "How many route flips to measure, one new MPTCP connection each.", 1, 500, 20);
        Option<bool> requests = ToolOptions.Flag("--requests",
            "Measure small requests sent back to back (GET /bytes/1024) instead of a paced download.");
        Option<bool> noFlip = ToolOptions.Flag("--no-flip", "Do not move the route: the control run, to tell the flip's stall from the lab's own.");
        Option<int> rate = Rate();
        ChoiceOption<AfterJoinPolicy> afterJoin = AfterJoin();
        var measure = new Command("measure",
            "Measure the stall a route flip causes: for each flip a new MPTCP connection joins and transfers while the route " +
            "moves; prints the longest gap per flip, the median and the worst.")
        {
            flips,
            requests,
            noFlip,
            rate,
            afterJoin,
        };
        shape.AddTo(measure);
        measure.SetAction(async (parse, _) =>
        {
            LabOptions options = shape.Read(parse);
            string? policy = afterJoin.Get(parse)?.ToString();
            int count = parse.GetValue(flips), bytesPerSecond = parse.GetValue(rate);
            bool askRequests = parse.GetValue(requests), control = parse.GetValue(noFlip);
            return await RunAsRootAsync(parse, "measure", token => LabMeasure.RunAsync(options, policy, count, askRequests, bytesPerSecond,
                tool(), parse.InvocationConfiguration.Output, token, noFlip: control)).ConfigureAwait(false);
        });
        return measure;
    }

    private Command Up()
    {
        var shape = new LabShapeOptions(LabPathManager.Kernel, pops: true);
        Option<bool> rescue = ToolOptions.Flag("--rescue", "Also start the rescue agent in every POP; it runs until lab down.");
        var up = new Command("up",
            "Build a lab and leave it up, for your own commands inside it (ip netns exec PREFIX-client ...); lab flip moves the " +
            "route, lab down removes it.")
        {
            rescue,
        };
        shape.AddTo(up);
        up.SetAction(parse =>
        {
            LabOptions options = shape.Read(parse);
            bool withRescue = parse.GetValue(rescue);
            return RunAsRoot(parse, () => StandingLab.Up(options, withRescue ? tool() : null, parse.InvocationConfiguration.Output));
        });
        return up;
    }

    private Command Flip()
    {
        Option<string?> prefix = Prefix("the only lab that is up");
        var to = new ChoiceOption<LabPopId>("--to",
            $"The POP the anycast route moves to. {ToolOptions.DefaultText("the next POP: A to B, B to C (or A), C to A")}", null);
        var flip = new Command("flip", "Move the lab's anycast route to another POP.") { prefix, to };
        flip.SetAction(parse =>
        {
            string? lab = parse.GetValue(prefix);
            LabPopId? target = to.Get(parse);
            return RunAsRoot(parse, () => StandingLab.Flip(lab, target, parse.GetValue(to), parse.InvocationConfiguration.Output));
        });
        return flip;
    }

    private Command Status()
    {
        Option<string?> prefix = Prefix("the only lab that is up");
        var status = new Command("status", "Show a lab: its namespaces, addresses, routes and the MPTCP endpoints of each POP.") { prefix };
        status.SetAction(parse => RunAsRoot(parse, () => StandingLab.Status(parse.GetValue(prefix), parse.InvocationConfiguration.Output)));
        return status;
    }

    private Command Down()
    {
        Option<string?> prefix = Prefix("the only lab that is up");
        var down = new Command("down", "Remove a lab: its namespaces, its POP servers and rescue agents, its state file.") { prefix };
        down.SetAction(parse => RunAsRoot(parse, () => StandingLab.Down(parse.GetValue(prefix), parse.InvocationConfiguration.Output)));
        return down;
    }

    /// <summary>
    /// <c>lab serve [OPTIONS]</c>: the POP server, until SIGTERM or Ctrl-C. Hidden: the lab starts it in a POP's
    /// namespace. Not root only: an operator may run it with just <c>CAP_NET_ADMIN</c>. Its options are ASP.NET Core
    /// configuration keys (<c>--MptcpAnycast:Mode</c>), which the POP server checks itself, so the parser passes them on.
    /// </summary>
    private static Command Serve()
    {
        var serve = new Command("serve", "The lab's POP server (the lab starts it in each POP): --urls, --Pop, --Transport and MptcpAnycast settings.")
        {
            Hidden = true,
            TreatUnmatchedTokensAsErrors = false,
        };
        serve.SetAction(async (parse, _) =>
        {
            string[] args = [.. parse.UnmatchedTokens];
            if (PopServerApp.CheckArguments(args) is string problem)
            {
                throw new UsageException(problem);
            }

            try
            {
                await PopServerApp.RunAsync(args).ConfigureAwait(false);
                return 0;
            }
            catch (Exception ex) when (ex is MptcpAnycastConfigurationException or Microsoft.Extensions.Options.OptionsValidationException
                or IOException or InvalidOperationException or System.Net.Sockets.SocketException or UnauthorizedAccessException)
            {
                // Refused to start: a bad transport option (the message names the setting and the value), an address in use.
                throw new CommandFailedException(ex.Message);
            }
        });
        return serve;
    }

    private static Option<int> Rate() =>
        ToolOptions.Int("--rate", "bytes/s", "How fast the POP server sends to each streaming client, in bytes per second.", 1024, 64 * 1024 * 1024, 128 * 1024);

    private static ChoiceOption<AfterJoinPolicy> AfterJoin() => new("--after-join",
        "What the POP server's transport does with the anycast subflow once the unicast one has joined: keep-both (leave it), " +
        $"prefer-unicast (make it backup) or migrate-to-unicast (close it). {ToolOptions.DefaultText("prefer-unicast, the transport's default")}", null, "policy");

    /// <summary><c>--prefix</c>: which lab; checked as the lab checks it (letters, digits and '_').</summary>
    internal static Option<string?> Prefix(string whenAbsent) => new("--prefix")
    {
        Description = $"The lab's name: its namespaces are PREFIX-client, PREFIX-router, PREFIX-popa, ... {ToolOptions.DefaultText(whenAbsent)}",
        HelpName = "prefix",
        CustomParser = result =>
        {
            string text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
            if (LabOptions.ValidatePrefix(text) is string problem)
            {
                result.AddError(problem);
                return null;
            }

            return text;
        },
    };

    /// <summary>The root check, then the command; a failed step (its output is in the message) is exit 1.</summary>
    private int RunAsRoot(ParseResult parse, Func<int> run)
    {
        if (!isRoot())
        {
            parse.InvocationConfiguration.Error.WriteLine(RootRefusal);
            return 1;
        }

        try
        {
            return run();
        }
        catch (Exception ex) when (ex is InvalidOperationException or TimeoutException or IOException or UnauthorizedAccessException
            or System.ComponentModel.Win32Exception)
        {
            // A command that failed (its output is in the message), a missing tool, or an unwritable state file.
            throw new CommandFailedException(ex.Message);
        }
    }

    /// <summary>
    /// The root check, then a long lab command that Ctrl-C cancels instead of killing the process (it then removes its
    /// lab); a failed step becomes one line on stderr and exit code 1.
    /// </summary>
    private async Task<int> RunAsRootAsync(ParseResult parse, string verb, Func<CancellationToken, Task<int>> run)
    {
        TextWriter error = parse.InvocationConfiguration.Error;
        if (!isRoot())
        {
            error.WriteLine(RootRefusal);
            return 1;
        }

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
            error.WriteLine($"mptcp-anycast lab {verb}: interrupted; the lab was removed.");
            return 1;
        }
        catch (Exception ex) when (ex is OperationCanceledException or InvalidOperationException or TimeoutException or IOException
            or System.Net.Sockets.SocketException or System.ComponentModel.Win32Exception or JsonException)
        {
            error.WriteLine($"mptcp-anycast lab {verb}: {ex.Message}");
            return 1;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }
}
