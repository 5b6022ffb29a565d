using System.CommandLine;
using System.Net;
using MptcpAnycast.Cli.CommandLine;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Cli.Commands;

/// <summary>
/// <c>mptcp-anycast announce --token HEX --id N --address ADDR [--port P]</c> and <c>remove --token HEX --id N</c>:
/// the userspace path manager's per-connection commands, for debugging one connection.
/// </summary>
internal static class AnnounceCommand
{
    public static Command CreateAnnounce()
    {
        Option<uint?> token = PathManagerArguments.Token();
        Option<int?> id = ToolOptions.RequiredInt("--id", "id", "The address id to announce it under (remove takes it back).", 1, 255);
        Option<IPAddress?> address = ToolOptions.Address("--address", "The address to announce (IPv4 or IPv6), a local address of this host.");
        address.Required = true;
        Option<int> port = ToolOptions.Int("--port", "port",
            "The port to announce with the address; 0 announces none, and the peer joins the connection's own port.", 0, 65535, 0);
        var command = new Command("announce",
            "Announce an address on one connection with ADD_ADDR. Needs the userspace path manager (sysctl net.mptcp.path_manager=userspace).")
        {
            token,
            id,
            address,
            port,
        };
        command.SetAction(async (parse, _) =>
        {
            uint t = parse.GetValue(token)!.Value;
            byte i = (byte)parse.GetValue(id)!.Value;
            IPAddress a = parse.GetValue(address)!;
            int p = parse.GetValue(port);
            await using PathManagerClient pm = await PathManagerArguments.OpenAsync().ConfigureAwait(false);
            await pm.AnnounceAsync(t, i, new IPEndPoint(a, p)).ConfigureAwait(false);
            parse.InvocationConfiguration.Output.WriteLine($"announced {a}{(p != 0 ? $" port {p}" : "")} id {i} on token {t:x8}");
            return 0;
        });
        return command;
    }

    public static Command CreateRemove()
    {
        Option<uint?> token = PathManagerArguments.Token();
        Option<int?> id = ToolOptions.RequiredInt("--id", "id", "The id the address was announced under.", 1, 255);
        var command = new Command("remove", "Withdraw an address announced on one connection with RM_ADDR. Needs the userspace path manager.")
        {
            token,
            id,
        };
        command.SetAction(async (parse, _) =>
        {
            uint t = parse.GetValue(token)!.Value;
            byte i = (byte)parse.GetValue(id)!.Value;
            await using PathManagerClient pm = await PathManagerArguments.OpenAsync().ConfigureAwait(false);
            await pm.RemoveAsync(t, i).ConfigureAwait(false);
            parse.InvocationConfiguration.Output.WriteLine($"removed id {i} on token {t:x8}");
            return 0;
        });
        return command;
    }
}
