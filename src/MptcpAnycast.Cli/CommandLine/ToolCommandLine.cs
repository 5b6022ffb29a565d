using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.Reflection;
using MptcpAnycast.Cli.Commands;

namespace MptcpAnycast.Cli.CommandLine;

/// <summary>
/// The tool's command tree and what it prints around the commands: the usage errors (exit 2, on stderr), the exit codes
/// under every --help, <c>--version</c> and <c>help COMMAND</c>.
/// </summary>
internal static class ToolCommandLine
{
    public const string ToolName = "mptcp-anycast";

    /// <summary>A wrong command line. System.CommandLine's own is 1, which here means "the command ran and failed".</summary>
    public const int UsageExitCode = 2;

    /// <summary>No response files: an argument that starts with <c>@</c> is an argument, as it was before this parser.</summary>
    public static readonly ParserConfiguration Parsing = new() { ResponseFileTokenReplacer = null };

    // System.CommandLine's message when a command that needs a subcommand has none (its resources are English here:
    // the tool runs with invariant globalization). Replaced by one that lists the subcommands.
    private const string RequiredCommandMessage = "Required command was not provided.";

    public static RootCommand Create(LabCommand lab)
    {
        var root = new RootCommand(
            "MptcpAnycast's operator tool: check a host, watch and change the kernel's MPTCP path manager, run the rescue " +
            "agent, and run the anycast lab in network namespaces.")
        {
            CheckCommand.Create(),
            MonitorCommand.Create(),
            EndpointsCommand.Create(),
            LimitsCommand.Create(),
            AnnounceCommand.CreateAnnounce(),
            AnnounceCommand.CreateRemove(),
            RescueCommand.Create(),
            lab.Create(),
        };
        root.Add(HelpCommand(root));
        foreach (Option option in root.Options)
        {
            switch (option)
            {
                case HelpOption help:
                    help.Action = new HelpWithExitCodes((HelpAction)help.Action!);
                    break;
                case VersionOption version:
                    version.Description = "Print the tool's version (with the commit it was built from) and exit.";
                    version.Action = new PrintVersion();
                    break;
            }
        }

        return root;
    }

    /// <summary><c>mptcp-anycast endpoints add</c>: the command's words from the tool's name down.</summary>
    public static string PathOf(Command command)
    {
        var names = new List<string>();
        for (Symbol? symbol = command; symbol is Command c and not RootCommand; symbol = c.Parents.FirstOrDefault())
        {
            names.Insert(0, c.Name);
        }

        return string.Join(' ', [ToolName, .. names]);
    }

    /// <summary><c>usage: mptcp-anycast lab &lt;demo|measure|...&gt; [options]</c>: one line, the details are in --help.</summary>
    public static string UsageOf(Command command)
    {
        var words = new List<string> { PathOf(command) };
        string[] subcommands = [.. command.Subcommands.Where(c => !c.Hidden).Select(c => c.Name)];
        if (subcommands.Length > 0)
        {
            string choice = string.Join('|', subcommands);
            words.Add(command.Action is null ? $"<{choice}>" : $"[{choice}]");
        }

        foreach (Argument argument in command.Arguments.Where(a => !a.Hidden))
        {
            string name = argument.Arity.MaximumNumberOfValues > 1 ? argument.Name + "..." : argument.Name;
            words.Add(argument.Arity.MinimumNumberOfValues == 0 ? $"[{name}]" : name);
        }

        if (command is RootCommand || command.Options.Any(o => !o.Hidden))
        {
            words.Add("[options]");
        }

        return "usage: " + string.Join(' ', words);
    }

    /// <summary>A usage error found while the command ran: the message, the usage line and where to read more.</summary>
    public static void WriteUsageError(Command command, string message, TextWriter error)
    {
        error.WriteLine($"{PathOf(command)}: {message}");
        WriteUsage(command, error);
    }

    /// <summary>
    /// The parse errors, each once and naming what is wrong, then the usage. An unknown word where a command is expected
    /// is "unknown command", with the closest command when one is close.
    /// </summary>
    public static void WriteParseErrors(ParseResult parse, TextWriter error)
    {
        Command command = parse.CommandResult.Command;
        string path = PathOf(command);
        string[] commandNames = [.. command.Subcommands.Where(c => !c.Hidden).SelectMany(c => c.Aliases.Prepend(c.Name))];
        string? unknownCommand = commandNames.Length > 0 ? parse.UnmatchedTokens.FirstOrDefault(t => !t.StartsWith('-')) : null;
        var messages = new List<string>(ValueErrors(parse.CommandResult));
        foreach (string message in parse.Errors.Select(e => e.Message).Distinct())
        {
            if (message == RequiredCommandMessage)
            {
                if (unknownCommand is null)
                {
                    messages.Add($"say which command to run: {string.Join(", ", command.Subcommands.Where(c => !c.Hidden).Select(c => c.Name))}");
                }
            }
            else if (unknownCommand is not null && message.Contains($"'{unknownCommand}'", StringComparison.Ordinal))
            {
                string? near = Closest(unknownCommand, commandNames);
                messages.Add($"unknown command '{unknownCommand}'{(near is null ? "" : $" (did you mean '{near}'?)")}");
            }
            else
            {
                messages.Add(message);
            }
        }

        foreach (string message in messages.Distinct())
        {
            error.WriteLine($"{path}: {message}");
        }

        WriteUsage(command, error);
        if (parse.Tokens.Count == 0 || (command.Action is null && unknownCommand is null && command.Subcommands.Count > 0))
        {
            WriteCommandList(command, error);
        }
    }

    /// <summary>
    /// The check of every value given to the command (<c>option '--id' must be ... (got 'abc')</c>). System.CommandLine
    /// checks the options only after the command's validators and not at all once one of them found an error, so
    /// without this <c>--id abc</c> would hide behind "say what to change" and a second bad value behind the first.
    /// </summary>
    private static List<string> ValueErrors(System.CommandLine.Parsing.CommandResult command)
    {
        var errors = new List<string>();
        foreach (System.CommandLine.Parsing.SymbolResult child in command.Children)
        {
            try
            {
                _ = child switch
                {
                    System.CommandLine.Parsing.OptionResult option => option.GetValueOrDefault<object?>(),
                    System.CommandLine.Parsing.ArgumentResult argument => argument.GetValueOrDefault<object?>(),
                    _ => null,
                };
            }
            catch (InvalidOperationException e)
            {
                errors.Add(e.Message);
            }
        }

        return errors;
    }

    private static void WriteUsage(Command command, TextWriter error)
    {
        error.WriteLine(UsageOf(command));
        error.WriteLine($"Run '{PathOf(command)} --help' for the details.");
    }

    private static void WriteCommandList(Command command, TextWriter output)
    {
        Command[] visible = [.. command.Subcommands.Where(c => !c.Hidden)];
        int width = visible.Max(c => c.Name.Length);
        output.WriteLine();
        foreach (Command c in visible)
        {
            output.WriteLine($"  {c.Name.PadRight(width)}  {FirstSentence(c.Description)}");
        }
    }

    /// <summary>A command's description up to its first full stop: the line under the usage.</summary>
    private static string FirstSentence(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return "";
        }

        int end = text.IndexOfAny(['.', '?']);
        while (end >= 0 && end + 1 < text.Length && text[end + 1] != ' ')
        {
            end = text.IndexOfAny(['.', '?'], end + 1);
        }

        return end < 0 ? text : text[..(end + 1)];
    }

    /// <summary>The name at most two edits away from <paramref name="word"/> (a typo), or null.</summary>
    private static string? Closest(string word, IEnumerable<string> names) =>
        names.Select(n => (Name: n, Distance: EditDistance(word, n))).Where(x => x.Distance <= 2).OrderBy(x => x.Distance).Select(x => x.Name).FirstOrDefault();

    private static int EditDistance(string a, string b)
    {
        int[] previous = [.. Enumerable.Range(0, b.Length + 1)];
        for (int i = 1; i <= a.Length; i++)
        {
            int[] current = new int[b.Length + 1];
            current[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int substitute = previous[j - 1] + (char.ToLowerInvariant(a[i - 1]) == char.ToLowerInvariant(b[j - 1]) ? 0 : 1);
                current[j] = Math.Min(substitute, Math.Min(previous[j], current[j - 1]) + 1);
            }

            previous = current;
        }

        return previous[b.Length];
    }

    /// <summary><c>help [COMMAND...]</c>: the same as <c>COMMAND --help</c>.</summary>
    private static Command HelpCommand(RootCommand root)
    {
        var topic = new Argument<string[]>("COMMAND")
        {
            Description = "The command to explain, as typed: check, endpoints change, lab demo.",
            Arity = ArgumentArity.ZeroOrMore,
        };
        var help = new Command("help", "Show the help of a command, the same as COMMAND --help.") { topic };
        help.SetAction(parse =>
        {
            string[] words = parse.GetValue(topic) ?? [];
            ParseResult inner = root.Parse([.. words, "--help"], Parsing);
            if (inner.UnmatchedTokens.Count > 0)
            {
                throw new UsageException($"no command '{string.Join(' ', words)}' ({ToolName} --help lists them)");
            }

            return inner.Invoke(parse.InvocationConfiguration);
        });
        return help;
    }

    /// <summary>System.CommandLine's help, then the tool's exit codes.</summary>
    private sealed class HelpWithExitCodes(HelpAction help) : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult parseResult)
        {
            int code = help.Invoke(parseResult);
            TextWriter output = parseResult.InvocationConfiguration.Output;
            output.WriteLine("Exit codes:");
            output.WriteLine("  0  done (check: the host is ready)");
            output.WriteLine("  1  the command ran and failed, or check found the host not ready; the reason is on stderr");
            output.WriteLine($"  {UsageExitCode}  wrong command line; the error and the usage are on stderr");
            output.WriteLine();
            return code;
        }
    }

    /// <summary>
    /// <c>--version</c>: the tool's informational version (the package version and the commit). System.CommandLine's
    /// own prints the entry assembly's, which is not the tool's when a test host runs it.
    /// </summary>
    private sealed class PrintVersion : SynchronousCommandLineAction
    {
        public override int Invoke(ParseResult parseResult)
        {
            if (parseResult.Tokens.Count > 1)
            {
                WriteUsageError(parseResult.RootCommandResult.Command, "--version takes no other argument", parseResult.InvocationConfiguration.Error);
                return UsageExitCode;
            }

            Assembly tool = typeof(ToolCommandLine).Assembly;
            parseResult.InvocationConfiguration.Output.WriteLine(
                tool.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? tool.GetName().Version?.ToString());
            return 0;
        }
    }
}
