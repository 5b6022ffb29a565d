using System.Text.Json;
using System.Text.Json.Serialization;

namespace MptcpAnycast.Lab;

/// <summary>
/// What a later <c>lab flip</c>, <c>lab status</c> or <c>lab down</c> needs to know about a lab made by <c>lab up</c>:
/// its options, which POP the anycast route points at, and how the MPTCP option is stripped. Kept in
/// <c>/run/mptcp-anycast/PREFIX.json</c> (tmpfs: gone after a reboot, like the namespaces).
/// </summary>
public sealed record LabState(LabOptions Options, LabPopId Active, string? StripMechanism)
{
    public static string Directory { get; } = "/run/mptcp-anycast";

    public static string PathFor(string prefix) => Path.Combine(Directory, prefix + ".json");

    public void Save()
    {
        System.IO.Directory.CreateDirectory(Directory);
        string path = PathFor(Options.Prefix);
        string temporary = path + ".tmp";
        File.WriteAllText(temporary, JsonSerializer.Serialize(this, LabStateJson.Default.LabState));
        File.Move(temporary, path, overwrite: true);
    }

    public static LabState? Load(string prefix)
    {
        string path = PathFor(prefix);
        if (!File.Exists(path))
        {
            return null;
        }

        try
        {
            return JsonSerializer.Deserialize(File.ReadAllText(path), LabStateJson.Default.LabState);
        }
        catch (JsonException ex)
        {
            throw new InvalidOperationException($"the lab state file {path} is damaged ({ex.Message}); run 'mptcp-anycast lab down --prefix {prefix}'", ex);
        }
    }

    public static void Delete(string prefix)
    {
        File.Delete(PathFor(prefix));
        File.Delete(PathFor(prefix) + ".tmp");
    }

    /// <summary>The prefixes of all labs that have a state file.</summary>
    public static IReadOnlyList<string> Prefixes() =>
        System.IO.Directory.Exists(Directory)
            ? System.IO.Directory.GetFiles(Directory, "*.json").Select(Path.GetFileNameWithoutExtension).OfType<string>().Order(StringComparer.Ordinal).ToArray()
            : [];
}

[JsonSourceGenerationOptions(WriteIndented = true, UseStringEnumConverter = true)]
[JsonSerializable(typeof(LabState))]
internal sealed partial class LabStateJson : JsonSerializerContext;
