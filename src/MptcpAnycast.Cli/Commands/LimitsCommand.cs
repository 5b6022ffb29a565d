using MptcpAnycast.Cli.CommandLine;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Cli.Commands;

/// <summary><c>mptcp-anycast limits [--subflows N] [--add-addr-accepted N]</c>: show, or change what is given, as <c>ip mptcp limits</c>.</summary>
internal static class LimitsCommand
{
    private static readonly HashSet<string> Flags = [];
    private static readonly HashSet<string> Valued = ["--subflows", "--add-addr-accepted"];

    public static async Task<int> RunAsync(string[] args, TextWriter output)
    {
        var reader = new ArgumentReader(args, Flags, Valued);
        reader.NoPositional();
        int? subflows = reader.Int("--subflows", 0, 8);
        int? accepted = reader.Int("--add-addr-accepted", 0, 8);
        await using PathManagerClient pm = await PathManagerArguments.OpenAsync().ConfigureAwait(false);
        MptcpLimits limits = await pm.GetLimitsAsync().ConfigureAwait(false);
        if (subflows is not null || accepted is not null)
        {
            await pm.SetLimitsAsync(new MptcpLimits((uint)(subflows ?? (int)limits.Subflows), (uint)(accepted ?? (int)limits.AddAddrAccepted))).ConfigureAwait(false);
            limits = await pm.GetLimitsAsync().ConfigureAwait(false);
        }

        output.WriteLine($"add_addr_accepted {limits.AddAddrAccepted} subflows {limits.Subflows}");
        return 0;
    }
}
