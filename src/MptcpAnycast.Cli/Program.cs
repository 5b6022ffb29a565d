using MptcpAnycast.Cli.CommandLine;
using MptcpAnycast.Cli.Commands;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Cli;

internal static class Program
{
    /// <summary>One command of the tool: its name, one usage line, and the code that runs it.</summary>
    internal sealed record Command(string Name, string Usage, string Summary, Func<string[], TextWriter, Task<int>> Run);

    internal static readonly Command[] Commands =
    [
        new("check", "check [--role server|client] [--json]", "Is this host ready to serve (or reach) anycast over MPTCP?", CheckCommand.RunAsync),
        new("monitor", "monitor [--json] [--count N] [--timeout S]", "Print every MPTCP path-manager event, one line each, with all attributes.", MonitorCommand.RunAsync),
        new("endpoints", "endpoints list|add|delete|flush [ADDRESS] [--id N] [--port P] [--dev IF] [--flags signal,subflow,backup,fullmesh] [--json]",
            "Show or change the in-kernel path manager's endpoints (as ip mptcp endpoint).", EndpointsCommand.RunAsync),
        new("limits", "limits [--subflows N] [--add-addr-accepted N]", "Show or set the in-kernel path manager's limits (as ip mptcp limits).", LimitsCommand.RunAsync),
        new("announce", "announce --token HEX --id N --address ADDR [--port P]", "Announce an address on one connection (userspace path manager).", AnnounceCommand.AnnounceAsync),
        new("remove", "remove --token HEX --id N", "Withdraw an announced address from one connection (userspace path manager).", AnnounceCommand.RemoveAsync),
        new("rescue", RescueCommand.Usage, "Run the rescue agent (plain TCP connections survive anycast route changes by tunnelling to their POP), or show what it does.",
            RescueCommand.RunAsync),
        new("lab", LabCommand.Usage, "The anycast lab in network namespaces: client, router, POP A and POP B (and POP C with --pops 3); flip the anycast route (root only).",
            LabCommand.ForThisProcess().RunAsync),
    ];

    public static async Task<int> Main(string[] args)
    {
        return await RunAsync(args, Console.Out, Console.Error).ConfigureAwait(false);
    }

    /// <summary>Runs the tool; 0 success, 1 the command's own "not ready"/failure, 2 a wrong command line.</summary>
    internal static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            PrintUsage(args.Length == 0 ? stderr : stdout);
            return args.Length == 0 ? 2 : 0;
        }

        Command? command = Array.Find(Commands, c => c.Name == args[0]);
        if (command is null)
        {
            stderr.WriteLine($"mptcp-anycast: unknown command '{args[0]}'");
            PrintUsage(stderr);
            return 2;
        }

        if (args.Skip(1).Any(a => a is "-h" or "--help"))
        {
            stdout.WriteLine($"usage: mptcp-anycast {command.Usage}");
            stdout.WriteLine($"  {command.Summary}");
            return 0;
        }

        try
        {
            return await command.Run(args[1..], stdout).ConfigureAwait(false);
        }
        catch (UsageException ex)
        {
            stderr.WriteLine($"mptcp-anycast {command.Name}: {ex.Message}");
            stderr.WriteLine($"usage: mptcp-anycast {command.Usage}");
            return 2;
        }
        catch (CommandFailedException ex)
        {
            stderr.WriteLine($"mptcp-anycast {command.Name}: {ex.Message}");
            return 1;
        }
        catch (PathManagerException ex)
        {
            stderr.WriteLine($"mptcp-anycast {command.Name}: {ex.Message}");
            return 1;
        }
    }

    private static void PrintUsage(TextWriter writer)
    {
        writer.WriteLine("usage: mptcp-anycast <command> [options]");
        writer.WriteLine();
        foreach (Command c in Commands)
        {
            writer.WriteLine($"  {c.Usage}");
            writer.WriteLine($"      {c.Summary}");
        }

        writer.WriteLine();
        writer.WriteLine("Exit codes: 0 ok, 1 not ready or failed, 2 wrong arguments.");
    }
}
