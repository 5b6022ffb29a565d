namespace MptcpAnycast.Lab;

/// <summary>
/// The run's words to its output. A write that fails is dropped (after SIGHUP the terminal is gone, and writing to
/// it fails): the run must still remove its lab.
/// </summary>
internal sealed class DemoNarration(TextWriter output)
{
    public void Line(string text = "")
    {
        try
        {
            output.WriteLine(text);
        }
        catch (IOException)
        {
            // The terminal or pipe is gone.
        }
    }

    /// <summary>A long text after <paramref name="label"/>, wrapped at word boundaries, the next lines indented under the text.</summary>
    public void Wrapped(string label, string text, int width = 110)
    {
        var line = new System.Text.StringBuilder(label);
        foreach (string word in text.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.Length > label.Length && line.Length + 1 + word.Length > width)
            {
                Line(line.ToString());
                line.Clear().Append(' ', label.Length);
            }

            line.Append(line.Length > label.Length ? " " : "").Append(word);
        }

        Line(line.ToString());
    }
}
