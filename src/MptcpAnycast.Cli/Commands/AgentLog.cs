using MptcpAnycast.Cli.CommandLine;

namespace MptcpAnycast.Cli.Commands;

/// <summary>
/// Where <c>rescue run</c> writes the agent's lines: the <c>--log</c> file, or the console. A file that stops taking
/// lines (a full disk, <c>/dev/full</c>) is said once on stderr and the lines go to the console from then on: the
/// agent keeps running and no line, the reason a start failed least of all, is lost.
/// </summary>
internal sealed class AgentLog : IDisposable
{
    private readonly string? _path;
    private readonly TextWriter _console;
    private readonly TextWriter _error;
    private StreamWriter? _file;

    public AgentLog(string? path, TextWriter console, TextWriter error)
    {
        _path = path;
        _console = console;
        _error = error;
        _file = path is null ? null : ToolFiles.OpenAppend("--log", path);
    }

    public void WriteLine(string line) => Write(line, toConsole: true);

    /// <summary>A problem the caller also says on stderr: into the file, when there is one that takes it.</summary>
    public void WriteProblem(string line) => Write(line, toConsole: false);

    private void Write(string line, bool toConsole)
    {
        lock (_console)
        {
            if (_file is not null)
            {
                try
                {
                    _file.WriteLine(line); // the writer flushes every line
                    return;
                }
                catch (IOException e)
                {
                    _error.WriteLine($"mptcp-anycast rescue run: --log {_path}: cannot write: {e.Message}; printing the agent's lines instead");
                    Close();
                }
            }

            if (toConsole)
            {
                _console.WriteLine(line);
                _console.Flush();
            }
        }
    }

    public void Dispose()
    {
        lock (_console)
        {
            Close();
        }
    }

    private void Close()
    {
        try
        {
            _file?.Dispose();
        }
        catch (IOException)
        {
            // What it could not flush was already reported by WriteLine, which flushes every line.
        }

        _file = null;
    }
}
