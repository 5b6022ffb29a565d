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
    private static readonly HashSet<string> Flags = [];
    private static readonly HashSet<string> AnnounceValued = ["--token", "--id", "--address", "--port"];
    private static readonly HashSet<string> RemoveValued = ["--token", "--id"];

    public static async Task<int> AnnounceAsync(string[] args, TextWriter output)
    {
        var reader = new ArgumentReader(args, Flags, AnnounceValued);
        reader.NoPositional();
        uint token = PathManagerArguments.Token(reader);
        byte id = RequiredId(reader);
        IPAddress address = PathManagerArguments.Address("option '--address'", reader.Required("--address"));
        int port = reader.Int("--port", 0, 65535) ?? 0;
        await using PathManagerClient pm = await PathManagerArguments.OpenAsync().ConfigureAwait(false);
        await pm.AnnounceAsync(token, id, new IPEndPoint(address, port)).ConfigureAwait(false);
        output.WriteLine($"announced {address}{(port != 0 ? $" port {port}" : "")} id {id} on token {token:x8}");
        return 0;
    }

    public static async Task<int> RemoveAsync(string[] args, TextWriter output)
    {
        var reader = new ArgumentReader(args, Flags, RemoveValued);
        reader.NoPositional();
        uint token = PathManagerArguments.Token(reader);
        byte id = RequiredId(reader);
        await using PathManagerClient pm = await PathManagerArguments.OpenAsync().ConfigureAwait(false);
        await pm.RemoveAsync(token, id).ConfigureAwait(false);
        output.WriteLine($"removed id {id} on token {token:x8}");
        return 0;
    }

    private static byte RequiredId(ArgumentReader reader) =>
        (byte)(reader.Int("--id", 1, 255) ?? throw new UsageException("option '--id' is required"));
}
