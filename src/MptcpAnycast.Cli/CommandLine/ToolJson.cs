using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using MptcpAnycast.Cli.Commands;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Cli.CommandLine;

/// <summary>
/// What every <c>--json</c> prints goes through <see cref="Options"/>: camelCase names, one document per line (as
/// <c>ip -json</c>; <c>monitor --json</c> prints one event per line), text as it is (no <c>\u0027</c> for an apostrophe),
/// null members written as null. The same object is serialized the same way by every command: an endpoint in
/// <c>check --json</c> is the one of <c>endpoints list --json</c>.
/// </summary>
internal static class ToolJson
{
    public static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web)
    {
        TypeInfoResolver = ToolJsonContext.Default,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        WriteIndented = false,
    };

    /// <summary>One JSON document, no line end.</summary>
    public static string Serialize<T>(T value) => JsonSerializer.Serialize(value, (JsonTypeInfo<T>)Options.GetTypeInfo(typeof(T)));

    /// <summary>A built object (attributes known only at run time, as a path-manager event's).</summary>
    public static string Serialize(JsonObject value) => value.ToJsonString(Options);

    /// <summary>
    /// The JSON name of an attribute the kernel (and <c>ip mptcp monitor</c>) spells in snake case: <c>rem_id</c> is
    /// <c>remId</c>; <c>if_idx</c> is <c>ifindex</c>, as in <see cref="EndpointJson"/>.
    /// </summary>
    public static string NameOf(string kernelName)
    {
        if (kernelName == "if_idx")
        {
            return "ifindex";
        }

        string[] words = kernelName.Split('_', StringSplitOptions.RemoveEmptyEntries);
        return string.Concat(words.Select((w, i) => i == 0 ? w : char.ToUpperInvariant(w[0]) + w[1..]));
    }
}

/// <summary>An in-kernel path-manager endpoint, as <c>ip -json mptcp endpoint show</c> names its fields.</summary>
internal sealed record EndpointJson(int Id, string Address, int Port, IReadOnlyList<string> Flags, int Ifindex, string? Dev)
{
    public static EndpointJson Of(MptcpEndpoint e) =>
        new(e.Id, e.Address.ToString(), e.Port, [.. PathManagerArguments.FlagNames(e.Flags)], e.InterfaceIndex, HostInterfaces.NameOf(e.InterfaceIndex));
}

/// <summary>The in-kernel path manager's limits, the words of <c>ip mptcp limits</c> in camelCase.</summary>
internal sealed record LimitsJson(uint Subflows, uint AddAddrAccepted)
{
    public static LimitsJson Of(MptcpLimits limits) => new(limits.Subflows, limits.AddAddrAccepted);
}

/// <summary><c>check --json</c>.</summary>
internal sealed record CheckJson(string Role, bool Ready, CheckHostJson Host, IReadOnlyList<CheckFindingJson> Findings);

/// <summary>What <c>check</c> read from the host; <c>limits</c> and <c>endpoints</c> are null when the path manager could not be read.</summary>
internal sealed record CheckHostJson(
    string Kernel,
    bool MptcpSupported,
    string MptcpUnsupportedReason,
    int? Enabled,
    string? PathManager,
    int? AllowJoinInitialAddrPort,
    int? AddAddrTimeout,
    bool CapNetAdmin,
    LimitsJson? Limits,
    IReadOnlyList<EndpointJson>? Endpoints);

/// <summary>One finding of <c>check</c>; <c>fix</c> is null when there is nothing to do.</summary>
internal sealed record CheckFindingJson(string Name, string Severity, string Value, string Why, string? Fix, string? Persist);

[JsonSerializable(typeof(EndpointJson))]
[JsonSerializable(typeof(IReadOnlyList<EndpointJson>))]
[JsonSerializable(typeof(LimitsJson))]
[JsonSerializable(typeof(CheckJson))]
[JsonSerializable(typeof(JsonObject))]
internal sealed partial class ToolJsonContext : JsonSerializerContext;
