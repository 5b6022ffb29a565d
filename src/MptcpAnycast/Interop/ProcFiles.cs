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
}
