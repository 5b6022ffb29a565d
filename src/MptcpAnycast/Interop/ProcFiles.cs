using System.Globalization;

namespace MptcpAnycast.Interop;

/// <summary>Reads small files under <c>/proc</c> (sysctls, status). A missing or unreadable file reads as null; nothing throws.</summary>
internal static class ProcFiles
{
    /// <summary>An integer from <paramref name="path"/> under <paramref name="procRoot"/>, or null.</summary>
    public static int? ReadInt(string procRoot, string path)
        => int.TryParse(ReadText(procRoot, path), NumberStyles.Integer, CultureInfo.InvariantCulture, out int value) ? value : null;

    /// <summary>The text of <paramref name="path"/> under <paramref name="procRoot"/>, trimmed unless asked not to, or null.</summary>
    public static string? ReadText(string procRoot, string path, bool trim = true)
    {
        try
        {
            string text = File.ReadAllText(Path.Combine(procRoot, path));
            return trim ? text.Trim() : text;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>
    /// The type of the file system <paramref name="path"/> (absolute) lies on, from <paramref name="mountInfo"/> in the
    /// format of <c>/proc/self/mountinfo</c>, or null when no mount covers it: the last of the mounts with the longest
    /// mount point that is <paramref name="path"/> or one of its parents, since a later mount hides an earlier one there.
    /// </summary>
    public static string? FileSystemOf(string path, IEnumerable<string> mountInfo)
    {
        string? found = null;
        int longest = -1;
        foreach (string line in mountInfo)
        {
            // "36 35 98:0 /root /mount/point rw,noatime shared:1 - ext4 /dev/sda1 rw": the mount point is the fifth
            // field, the type the first after " - ".
            string[] fields = line.Split(' ');
            int separator = fields.Length < 8 ? -1 : Array.IndexOf(fields, "-", 6);
            if (separator < 0 || separator + 1 >= fields.Length)
            {
                continue;
            }

            string mountPoint = Unescape(fields[4]);
            bool covers = mountPoint == "/" || path == mountPoint
                || (path.StartsWith(mountPoint, StringComparison.Ordinal) && path[mountPoint.Length] == '/');
            if (covers && mountPoint.Length >= longest)
            {
                longest = mountPoint.Length;
                found = fields[separator + 1];
            }
        }

        return found;
    }

    /// <summary>The type of the file system <paramref name="path"/> lies on, as this process's mount namespace sees it, or null.</summary>
    public static string? FileSystemOf(string path)
    {
        try
        {
            return FileSystemOf(Path.TrimEndingDirectorySeparator(Path.GetFullPath(path)), File.ReadLines("/proc/self/mountinfo"));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    // mountinfo writes a space, tab, newline and backslash in a path as an octal escape (\040).
    private static string Unescape(string field) =>
        field.Replace("\\040", " ", StringComparison.Ordinal).Replace("\\011", "\t", StringComparison.Ordinal)
            .Replace("\\012", "\n", StringComparison.Ordinal).Replace("\\134", "\\", StringComparison.Ordinal);
}
