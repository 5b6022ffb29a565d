using System.CommandLine;
using System.CommandLine.Invocation;
using MptcpAnycast.Cli.CommandLine;
using MptcpAnycast.Cli.Commands;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Cli;

internal static class Program
{
    public static Task<int> Main(string[] args) => RunAsync(args, Console.Out, Console.Error);

    /// <summary>
    /// Runs the tool: 0 success, 1 the command ran and failed (or its answer is no: <c>check</c> not ready), 2 a wrong
    /// command line. Normal output goes to <paramref name="stdout"/>; errors, refusals and usage to <paramref name="stderr"/>.
    /// </summary>
    /// <param name="lab">The <c>lab</c> command to run (tests pass one that is not root); null: as this process is.</param>
    internal static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, LabCommand? lab = null)
    {
        try
        {
            return await RunCommandAsync(args, new OutputWriter(stdout), stderr, lab).ConfigureAwait(false);
        }
        catch (OutputFailedException ex)
        {
            return Failed(stderr, $"{ToolCommandLine.ToolName}: {ex.Message}");
        }
        catch (IOException ex)
        {
            // stderr failed, or a command met an I/O error it does not expect.
            return Failed(stderr, $"{ToolCommandLine.ToolName}: {ex.Message}");
        }
    }

    private static int Failed(TextWriter stderr, string message)
    {
        try
        {
            stderr.WriteLine(message);
        }
        catch (IOException)
        {
            // stderr cannot be written either: the exit code is all that is left to say it.
        }

        return 1;
    }

    private static async Task<int> RunCommandAsync(string[] args, TextWriter stdout, TextWriter stderr, LabCommand? lab)
    {
        RootCommand root = ToolCommandLine.Create(lab ?? LabCommand.ForThisProcess());
        ParseResult parse = root.Parse(args, ToolCommandLine.Parsing);
        if (parse.Action is ParseErrorAction)
        {
            ToolCommandLine.WriteParseErrors(parse, stderr);
            return ToolCommandLine.UsageExitCode;
        }

        var invocation = new InvocationConfiguration
        {
            Output = stdout,
            Error = stderr,
            // A command's own exception is mapped below; Ctrl-C is each long command's own business (the lab removes its namespaces).
            EnableDefaultExceptionHandler = false,
            ProcessTerminationTimeout = null,
        };
        try
        {
            return await parse.InvokeAsync(invocation).ConfigureAwait(false);
        }
        catch (UsageException ex)
        {
            ToolCommandLine.WriteUsageError(parse.CommandResult.Command, ex.Message, stderr);
            return ToolCommandLine.UsageExitCode;
        }
        catch (Exception ex) when (ex is CommandFailedException or PathManagerException)
        {
            stderr.WriteLine($"{ToolCommandLine.PathOf(parse.CommandResult.Command)}: {ex.Message}");
            return 1;
        }
    }
}
