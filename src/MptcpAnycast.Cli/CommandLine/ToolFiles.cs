namespace MptcpAnycast.Cli.CommandLine;

/// <summary>
/// Files named by an option, opened when the command starts and before it does anything else: one that cannot be
/// opened is a usage error (exit 2) naming the option, the file and why, <c>option '--log': cannot open
/// '/nonexistent/log.txt': no such directory '/nonexistent'</c>, not an exception.
/// </summary>
internal static class ToolFiles
{
    /// <summary>
    /// Reads at most <paramref name="max"/> bytes of <paramref name="stream"/> (one byte more tells that there was more):
    /// a file that never ends (<c>/dev/zero</c>, a device) is not read into memory without bound.
    /// </summary>
    public static MemoryStream ReadAtMost(Stream stream, int max)
    {
        var content = new MemoryStream();
        byte[] buffer = new byte[64 * 1024];
        int read;
        while (content.Length <= max && (read = stream.Read(buffer, 0, (int)Math.Min(buffer.Length, max + 1 - content.Length))) > 0)
        {
            content.Write(buffer, 0, read);
        }

        content.Position = 0;
        return content;
    }

    /// <summary>
    /// Opens <paramref name="path"/> to read it (<see cref="OpenReadWithoutWaiting"/>), or throws a
    /// <see cref="UsageException"/> naming <paramref name="option"/>.
    /// </summary>
    public static FileStream OpenRead(string option, string path) => Open(option, path, () => OpenReadWithoutWaiting(path));

    /// <summary>
    /// Opens <paramref name="path"/> to read it. A FIFO is opened without waiting for a writer: one that nothing writes
    /// to reads as empty at once instead of holding the command forever in open(2); a shell's <c>&lt;(...)</c> still
    /// works, its writer is already there. Failures are the exceptions <see cref="Problem"/> explains.
    /// </summary>
    public static FileStream OpenReadWithoutWaiting(string path) =>
        FileKinds.IsFifo(path) ? FileKinds.OpenFifo(path, FileAccess.Read) : new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);

    /// <summary>What to say of a file that read as empty: a FIFO's reader cannot tell "empty" from "nobody writes".</summary>
    public static string EmptyFile(string path) => FileKinds.IsFifo(path) ? "the file is empty (a FIFO that nothing wrote to)" : "the file is empty";

    /// <summary>
    /// Opens <paramref name="path"/> to append lines to it (made when missing), or throws a <see cref="UsageException"/>.
    /// A FIFO must have its reader already (a pipe to a logger): one that nothing reads is refused, not waited on.
    /// </summary>
    public static StreamWriter OpenAppend(string option, string path) =>
        Open(option, path, () => FileKinds.IsFifo(path)
            ? new StreamWriter(FileKinds.OpenFifo(path, FileAccess.Write)) { AutoFlush = true }
            : new StreamWriter(path, append: true) { AutoFlush = true });

    /// <summary>
    /// Why <paramref name="path"/> could not be opened or read, in a few words and without the path (the caller names
    /// it); null when <paramref name="e"/> is not a failure to open a file.
    /// </summary>
    public static string? Problem(string path, Exception e) => e switch
    {
        ArgumentException or NotSupportedException => "not a file name",
        // A directory is refused with "access denied" on open (even to root), which would send the reader to the permissions.
        UnauthorizedAccessException or IOException when Directory.Exists(path) => "it is a directory",
        UnauthorizedAccessException => "permission denied",
        FileNotFoundException => "no such file",
        DirectoryNotFoundException => $"no such directory '{DirectoryOf(path)}'",
        PathTooLongException => "the name is too long",
        IOException => e.Message,
        _ => null,
    };

    private static T Open<T>(string option, string path, Func<T> open)
    {
        if (path.Length == 0)
        {
            throw CannotOpen(option, path, "the name is empty");
        }

        try
        {
            return open();
        }
        catch (Exception e) when (Problem(path, e) is string problem)
        {
            throw CannotOpen(option, path, problem);
        }
    }

    private static UsageException CannotOpen(string option, string path, string problem) =>
        new($"option '{option}': cannot open '{path}': {problem}");

    private static string DirectoryOf(string path) => Path.GetDirectoryName(Path.GetFullPath(path)) ?? path;
}
