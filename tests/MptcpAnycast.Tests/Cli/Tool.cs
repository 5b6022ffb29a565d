using MptcpAnycast.Cli;
using MptcpAnycast.Cli.Commands;

namespace MptcpAnycast.Tests.Cli;

/// <summary>
/// Runs the tool in this process as a user would type it. Its <c>lab</c> is not root, so a command line that parses
/// by mistake is refused instead of building a lab on the test host.
/// </summary>
internal static class Tool
{
    public static LabCommand NotRootLab { get; } = new(isRoot: () => false, tool: () => throw new InvalidOperationException("a refused lab starts no server"));

    public static async Task<(int Code, string Out, string Err)> RunAsync(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        // On a pool thread: a command that blocks before its first await (a read that never returns) fails the test
        // after the bound instead of holding the test host.
        int code = await Task.Run(() => Program.RunAsync(args, stdout, stderr, NotRootLab)).WaitAsync(TimeSpan.FromSeconds(30));
        return (code, stdout.ToString(), stderr.ToString());
    }

    /// <summary>Every command of the tool with its words (<c>endpoints change</c>), hidden ones included.</summary>
    public static IEnumerable<(string[] Words, System.CommandLine.Command Command)> AllCommands()
    {
        var stack = new Stack<(string[], System.CommandLine.Command)>();
        foreach (System.CommandLine.Command c in MptcpAnycast.Cli.CommandLine.ToolCommandLine.Create(NotRootLab).Subcommands.Reverse())
        {
            stack.Push(([c.Name], c));
        }

        while (stack.Count > 0)
        {
            (string[] words, System.CommandLine.Command command) = stack.Pop();
            yield return (words, command);
            foreach (System.CommandLine.Command sub in command.Subcommands.Reverse())
            {
                stack.Push(([.. words, sub.Name], sub));
            }
        }
    }
}
