using System.CommandLine;
using MptcpAnycast.Cli.CommandLine;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Cli.Commands;

/// <summary><c>mptcp-anycast limits [--subflows N] [--add-addr-accepted N] [--json]</c>: show, or change what is given, as <c>ip mptcp limits</c>.</summary>
internal static class LimitsCommand
{
    public static Command Create()
    {
        Option<int?> subflows = ToolOptions.OptionalInt("--subflows", "count",
            "Set how many additional subflows a connection may have (ip: subflows).", 0, 8, "unchanged");
        Option<int?> accepted = ToolOptions.OptionalInt("--add-addr-accepted", "count",
            "Set how many addresses a peer may announce (ADD_ADDR) per connection and this host joins (ip: add_addr_accepted).", 0, 8, "unchanged");
        Option<bool> json = ToolOptions.Flag("--json", "Print the limits as a JSON object (subflows, addAddrAccepted) instead of a line.");
        var command = new Command("limits",
            "Show or set the in-kernel path manager's limits of this network namespace, as ip mptcp limits. Prints the limits as they are after any change.")
        {
            subflows,
            accepted,
            json,
        };
        command.SetAction((parse, _) => RunAsync(parse.GetValue(subflows), parse.GetValue(accepted), parse.GetValue(json), parse.InvocationConfiguration.Output));
        return command;
    }

    private static async Task<int> RunAsync(int? subflows, int? accepted, bool json, TextWriter output)
    {
        await using PathManagerClient pm = await PathManagerArguments.OpenAsync().ConfigureAwait(false);
        MptcpLimits limits = await pm.GetLimitsAsync().ConfigureAwait(false);
        if (subflows is not null || accepted is not null)
        {
            await pm.SetLimitsAsync(new MptcpLimits((uint)(subflows ?? (int)limits.Subflows), (uint)(accepted ?? (int)limits.AddAddrAccepted))).ConfigureAwait(false);
            limits = await pm.GetLimitsAsync().ConfigureAwait(false);
        }

        output.WriteLine(json ? ToolJson.Serialize(LimitsJson.Of(limits)) : $"add_addr_accepted {limits.AddAddrAccepted} subflows {limits.Subflows}");
        return 0;
    }
}
