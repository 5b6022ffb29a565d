using System.Text;
using System.Text.Json;
using MptcpAnycast.Cli.CommandLine;
using MptcpAnycast.Host;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Cli.Commands;

/// <summary><c>mptcp-anycast check [--role server|client] [--json]</c>: exit 0 ready, 1 not ready, 2 bad arguments.</summary>
internal static class CheckCommand
{
    private static readonly HashSet<string> Flags = ["--json"];
    private static readonly HashSet<string> Valued = ["--role"];

    public static Task<int> RunAsync(string[] args, TextWriter output)
    {
        var reader = new ArgumentReader(args, Flags, Valued);
        reader.NoPositional();
        HostRole role = reader.Choice("--role", HostRole.Server);
        bool json = reader.Flag("--json");

        MptcpHostState state = MptcpHostState.Read();
        PathManagerSnapshot pathManager = state.Support.IsSupported
            ? PathManagerSnapshot.Read()
            : PathManagerSnapshot.Unreadable("MPTCP is unavailable.");
        IReadOnlyList<HostFinding> findings = HostCheck.Evaluate(state, role, pathManager);
        bool ready = HostCheck.IsReady(findings);

        output.Write(json ? FormatJson(role, state, findings, ready, pathManager) : FormatText(role, findings, ready));
        return Task.FromResult(ready ? 0 : 1);
    }

    internal static string FormatText(HostRole role, IReadOnlyList<HostFinding> findings, bool ready)
    {
        var text = new StringBuilder();
        text.AppendLine($"MPTCP anycast host check, role {Lower(role)}");
        foreach (HostFinding f in findings)
        {
            text.AppendLine($"  [{Lower(f.Severity),-7}] {f.Name,-18} {f.Value}");
            if (f.Severity != FindingSeverity.Ok)
            {
                text.AppendLine($"            why: {f.Why}");
                if (f.Fix is not null)
                {
                    text.AppendLine($"            fix: {f.Fix}");
                }
            }
        }

        int problems = findings.Count(f => f.Severity == FindingSeverity.Problem);
        int warnings = findings.Count(f => f.Severity == FindingSeverity.Warning);
        text.AppendLine($"{(ready ? "READY" : "NOT READY")} for role {Lower(role)}: {problems} problem(s), {warnings} warning(s)");
        return text.ToString();
    }

    internal static string FormatJson(HostRole role, MptcpHostState state, IReadOnlyList<HostFinding> findings, bool ready, PathManagerSnapshot? pathManager = null)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("role", Lower(role));
            json.WriteBoolean("ready", ready);
            json.WriteStartObject("host");
            json.WriteString("kernel", state.KernelRelease);
            json.WriteBoolean("mptcpSupported", state.Support.IsSupported);
            json.WriteString("mptcpUnsupportedReason", state.Support.Reason.ToString());
            WriteNullable(json, "enabled", state.Enabled);
            json.WriteString("pathManager", state.PathManager == MptcpPathManagerKind.Unknown ? null : state.PathManager.ToString().ToLowerInvariant());
            WriteNullable(json, "allowJoinInitialAddrPort", state.AllowJoinInitialAddrPort);
            WriteNullable(json, "addAddrTimeout", state.AddAddrTimeout);
            json.WriteBoolean("capNetAdmin", state.HasNetAdmin);
            if (pathManager?.Limits is MptcpLimits limits)
            {
                json.WriteStartObject("limits");
                json.WriteNumber("subflows", limits.Subflows);
                json.WriteNumber("addAddrAccepted", limits.AddAddrAccepted);
                json.WriteEndObject();
                json.WriteStartArray("endpoints");
                foreach (MptcpEndpoint e in pathManager.Endpoints)
                {
                    json.WriteStringValue(e.ToString());
                }

                json.WriteEndArray();
            }

            json.WriteEndObject();
            json.WriteStartArray("findings");
            foreach (HostFinding f in findings)
            {
                json.WriteStartObject();
                json.WriteString("name", f.Name);
                json.WriteString("severity", Lower(f.Severity));
                json.WriteString("value", f.Value);
                json.WriteString("why", f.Why);
                json.WriteString("fix", f.Fix);
                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray()) + Environment.NewLine;
    }

    private static void WriteNullable(Utf8JsonWriter json, string name, int? value)
    {
        if (value is int v)
        {
            json.WriteNumber(name, v);
        }
        else
        {
            json.WriteNull(name);
        }
    }

    private static string Lower<T>(T value) where T : struct, Enum => value.ToString().ToLowerInvariant();
}
