using System.Text;
using System.Text.Json;
using MptcpAnycast.Cli.CommandLine;

namespace MptcpAnycast.Cli.Commands;

/// <summary>
/// One agent's status file (<c>DIR/NAME.json</c>, what <see cref="Rescue.RescueStatus.ToJson"/> wrote), read whole
/// before anything of it is printed: a file that is damaged (not JSON, a member missing or of the wrong type), or that
/// cannot be read, is a <see cref="InvalidDataException"/> whose message says what, so that <c>rescue status</c>
/// reports it by name and shows the other agents.
/// </summary>
internal sealed record RescueStatusFile(
    string Name,
    string Interface,
    string? Attachment,
    DateTimeOffset WrittenAt,
    IReadOnlyList<string> Anycast,
    IReadOnlyList<string> Unicast,
    IReadOnlyList<string> Peers,
    int OwnerCapacity,
    int PendingLookups,
    IReadOnlyList<string> Owners,
    IReadOnlyList<KeyValuePair<string, long>> Counters,
    string Json)
{
    /// <summary>The most a status file may hold (an agent writes a few KiB; its owner list is bounded).</summary>
    internal const int MaxBytes = 16 << 20;

    public static RescueStatusFile Read(string path)
    {
        byte[] bytes;
        try
        {
            using FileStream file = ToolFiles.OpenReadWithoutWaiting(path);
            bytes = ToolFiles.ReadAtMost(file, MaxBytes).ToArray();
        }
        catch (Exception e) when (ToolFiles.Problem(path, e) is string problem)
        {
            throw new InvalidDataException($"cannot read: {problem}", e);
        }

        if (bytes.Length == 0)
        {
            throw new InvalidDataException(ToolFiles.EmptyFile(path));
        }

        if (bytes.Length > MaxBytes)
        {
            throw new InvalidDataException($"more than {MaxBytes / 1024 / 1024} MiB, not a rescue agent's status");
        }

        // JsonDocument checks the UTF-8 of a text only when it is read; a bad byte would then throw mid-way.
        if (!System.Text.Unicode.Utf8.IsValid(bytes))
        {
            throw new InvalidDataException("not a rescue agent's status: not valid UTF-8");
        }

        // An editor's byte order mark (a file written by hand, or by a tool other than the agent) is not the document.
        ReadOnlyMemory<byte> text = bytes.AsSpan().StartsWith(Utf8Bom) ? bytes.AsMemory(Utf8Bom.Length) : bytes;
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(text);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"not JSON: {RescueCommand.JsonProblem(e)}", e);
        }

        using (document)
        {
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new InvalidDataException($"not a rescue agent's status: {Kind(root.ValueKind)}, not an object");
            }

            try
            {
                return Parse(root);
            }
            catch (InvalidOperationException e)
            {
                // A text whose escapes spell no character (a lone surrogate, \ud800).
                throw new InvalidDataException($"not a rescue agent's status: {e.Message}", e);
            }
        }
    }

    /// <summary>
    /// <paramref name="text"/> safe to write to a terminal: control characters (an escape sequence that would recolour,
    /// move the cursor or retitle the window, a carriage return that would overwrite the line) and the bidirectional
    /// overrides that reorder what is shown are written as <c>\u001b</c>. Text is printed as an agent wrote it only
    /// through <c>--json</c>, where JSON's own escaping applies.
    /// </summary>
    internal static string Printable(string text)
    {
        if (!text.Any(NotPrintable))
        {
            return text;
        }

        var printable = new StringBuilder(text.Length + 16);
        foreach (char c in text)
        {
            printable.Append(NotPrintable(c) ? $"\\u{(int)c:x4}" : c);
        }

        return printable.ToString();
    }

    private static bool NotPrintable(char c) => char.IsControl(c) || c is >= '\u202a' and <= '\u202e' or >= '\u2066' and <= '\u2069';

    private static ReadOnlySpan<byte> Utf8Bom => [0xef, 0xbb, 0xbf];

    private static RescueStatusFile Parse(JsonElement root) =>
        new RescueStatusFile(
            Printable(Text(root, "name")),
            Printable(Text(root, "interface")),
            OptionalText(root, "attachment") is string attachment ? Printable(attachment) : null,
            Time(root, "writtenAt"),
            Texts(root, "anycast"),
            Texts(root, "unicast"),
            Texts(root, "peers"),
            Int(root, "ownerCapacity"),
            Int(root, "pendingLookups"),
            Texts(root, "owners"),
            [.. Member(root, "counters", JsonValueKind.Object).EnumerateObject().Select(c => KeyValuePair.Create(Printable(c.Name), Long(c)))],
            Compact(root));

    private static JsonElement Member(JsonElement root, string name, JsonValueKind kind)
    {
        if (!root.TryGetProperty(name, out JsonElement value))
        {
            throw new InvalidDataException($"not a rescue agent's status: no '{name}'");
        }

        return value.ValueKind == kind ? value : throw WrongType(name, value, Kind(kind));
    }

    private static string Text(JsonElement root, string name) => Member(root, name, JsonValueKind.String).GetString()!;

    /// <summary>A member that agents before it did not write: null when absent.</summary>
    private static string? OptionalText(JsonElement root, string name) =>
        root.TryGetProperty(name, out _) ? Text(root, name) : null;

    private static IReadOnlyList<string> Texts(JsonElement root, string name) =>
        [.. Member(root, name, JsonValueKind.Array).EnumerateArray().Select((e, i) =>
            e.ValueKind == JsonValueKind.String ? Printable(e.GetString()!) : throw WrongType($"{name}[{i}]", e, "a string"))];

    private static DateTimeOffset Time(JsonElement root, string name) =>
        Member(root, name, JsonValueKind.String).TryGetDateTimeOffset(out DateTimeOffset time) ? time : throw WrongType(name, root.GetProperty(name), "a time");

    private static int Int(JsonElement root, string name) =>
        Member(root, name, JsonValueKind.Number).TryGetInt32(out int value) ? value : throw WrongType(name, root.GetProperty(name), "a whole number");

    private static long Long(JsonProperty counter) =>
        counter.Value.ValueKind == JsonValueKind.Number && counter.Value.TryGetInt64(out long value)
            ? value
            : throw WrongType($"counters.{counter.Name}", counter.Value, "a whole number");

    private static InvalidDataException WrongType(string name, JsonElement value, string expected)
    {
        string got = value.GetRawText();
        return new InvalidDataException(Printable($"not a rescue agent's status: '{name}' must be {expected} (got {(got.Length > 40 ? got[..40] + "..." : got)})"));
    }

    private static string Kind(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "true or false",
        _ => "null",
    };

    /// <summary>The file's object on one line, as every <c>--json</c> prints (the agent writes it indented).</summary>
    private static string Compact(JsonElement root)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = ToolJson.Options.Encoder }))
        {
            root.WriteTo(writer);
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }
}
