using System.Text;

namespace MptcpAnycast.Cli.CommandLine;

/// <summary>
/// The tool's stdout: a write that fails (a full disk, <c>&gt;/dev/full</c>) is an <see cref="OutputFailedException"/>,
/// so that the program tells it from a command's own I/O error and says that the output could not be written.
/// </summary>
internal sealed class OutputWriter(TextWriter inner) : TextWriter(inner.FormatProvider)
{
    public override Encoding Encoding => inner.Encoding;

    public override void Write(char value) => Guard(() => inner.Write(value));

    public override void Write(string? value) => Guard(() => inner.Write(value));

    public override void Write(char[] buffer, int index, int count) => Guard(() => inner.Write(buffer, index, count));

    public override void WriteLine(string? value) => Guard(() => inner.WriteLine(value));

    public override void Flush() => Guard(inner.Flush);

    private static void Guard(Action write)
    {
        try
        {
            write();
        }
        catch (IOException e)
        {
            throw new OutputFailedException(e);
        }
    }
}

/// <summary>stdout could not be written; the reason is the inner exception's message.</summary>
internal sealed class OutputFailedException(IOException inner) : Exception($"cannot write to stdout: {inner.Message}", inner);
