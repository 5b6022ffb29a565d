using System.CommandLine;
using System.Text;
using MptcpAnycast.Cli.CommandLine;
using MptcpAnycast.Host;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Cli.Commands;

/// <summary><c>mptcp-anycast check [--role server|client] [--json]</c>: exit 0 ready, 1 not ready, 2 bad arguments.</summary>
internal static class CheckCommand
{
    public static Command Create()
    {
        var role = new ChoiceOption<HostRole>("--role",
            "What this host is: a POP's server on the anycast address, or a client whose connections should survive a route change.",
            HostRole.Server);
        Option<bool> json = ToolOptions.Flag("--json", "Print one JSON object (role, ready, host, findings) instead of the text report.");
        var command = new Command("check",
            "Is this host ready to serve (or reach) anycast over MPTCP? Reads the kernel's MPTCP settings and path manager and " +
            "prints each finding with why it matters and the fix. Exit 0 ready, 1 not ready.")
        {
            role,
            json,
        };
        command.SetAction(parse => Run(role.Get(parse) ?? HostRole.Server, parse.GetValue(json), parse.InvocationConfiguration.Output));
        return command;
    }

    private static int Run(HostRole role, bool json, TextWriter output)
    {
        MptcpHostState state = MptcpHostState.Read();
        PathManagerSnapshot pathManager = state.Support.IsSupported
            ? PathManagerSnapshot.Read()
            : PathManagerSnapshot.Unreadable("MPTCP is unavailable.");
        IReadOnlyList<HostFinding> findings = HostCheck.Evaluate(state, role, pathManager);
        bool ready = HostCheck.IsReady(findings);

        output.Write(json ? FormatJson(role, state, findings, ready, pathManager) : FormatText(role, findings, ready));
        return ready ? 0 : 1;
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

                if (f.Persist is not null)
                {
                    text.AppendLine($"            persist: {f.Persist}");
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
        MptcpLimits? limits = pathManager?.Limits;
        var host = new CheckHostJson(
            state.KernelRelease,
            state.Support.IsSupported,
            state.Support.Reason.ToString(),
            state.Enabled,
            state.PathManager == MptcpPathManagerKind.Unknown ? null : state.PathManager.ToString().ToLowerInvariant(),
            state.AllowJoinInitialAddrPort,
            state.AddAddrTimeout,
            state.HasNetAdmin,
            limits is null ? null : LimitsJson.Of(limits),
            limits is null ? null : [.. pathManager!.Endpoints.Select(EndpointJson.Of)]);
        var report = new CheckJson(Lower(role), ready, host,
            [.. findings.Select(f => new CheckFindingJson(f.Name, Lower(f.Severity), f.Value, f.Why, f.Fix, f.Persist))]);
        return ToolJson.Serialize(report) + Environment.NewLine;
    }

    private static string Lower<T>(T value) where T : struct, Enum => value.ToString().ToLowerInvariant();
}
