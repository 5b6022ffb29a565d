using System.Text.Json;
using System.Text.Json.Serialization;

namespace MptcpAnycast.Lab;

/// <summary>
/// What a later <c>lab flip</c>, <c>lab status</c> or <c>lab down</c> needs to know about a lab made by <c>lab up</c>:
/// its options (the POP count among them), which POP the anycast route points at, and how the MPTCP option is
/// stripped. Kept in <c>/run/mptcp-anycast/PREFIX.json</c> (tmpfs: gone after a reboot, like the namespaces). A file
/// without a POP count (written before labs could have three) loads as two POPs: the option's default.
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

        LabState? state;
        try
        {
            state = JsonSerializer.Deserialize(File.ReadAllText(path), LabStateJson.Default.LabState);
        }
        catch (JsonException ex)
        {
            throw Damaged(path, prefix, ex.Message, ex);
        }

        if (state is not null)
        {
            if (state.Options is null)
            {
                throw Damaged(path, prefix, "it has no options", null);
            }

            // The source-generated reader gives an init-only property missing from the file its type's default, not its
            // initializer (dotnet/runtime#84484): 0 POPs is a file written before labs could have three, which had two.
            if (state.Options.Pops == 0)
            {
                state = state with { Options = state.Options with { Pops = LabOptions.MinPops } };
            }

            if (LabOptions.ValidatePops(state.Options.Pops) is string problem)
            {
                throw Damaged(path, prefix, problem, null);
            }

            if (!Enum.IsDefined(state.Active) || (int)state.Active >= state.Options.Pops)
            {
                throw Damaged(path, prefix, $"the active POP {state.Active} is not one of its {state.Options.Pops} POPs", null);
            }
        }

        return state;
    }

    private static InvalidOperationException Damaged(string path, string prefix, string why, Exception? inner) =>
        new($"the lab state file {path} is damaged ({why}); run 'mptcp-anycast lab down --prefix {prefix}'", inner);

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
