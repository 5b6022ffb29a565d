using System.CommandLine;
using System.Net;
using MptcpAnycast.Cli.CommandLine;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Cli.Commands;

/// <summary>
/// <c>mptcp-anycast endpoints [list|add|delete|flush|change]</c>: the in-kernel path manager's endpoints, as
/// <c>ip mptcp endpoint</c>. Without a verb it lists them.
/// </summary>
internal static class EndpointsCommand
{
    private const MptcpEndpointFlags ChangeableFlags = MptcpEndpointFlags.Backup | MptcpEndpointFlags.Fullmesh;

    public static Command Create()
    {
        Option<bool> json = ListJson();
        var command = new Command("endpoints",
            "Show or change the in-kernel path manager's endpoints of this network namespace, as ip mptcp endpoint. " +
            "Without a command it lists them.")
        {
            json,
            List(),
            Add(),
            Delete(),
            Flush(),
            Change(),
        };
        command.SetAction((parse, _) => ListAsync(parse.GetValue(json), parse.InvocationConfiguration.Output));
        return command;
    }

    private static Option<bool> ListJson() =>
        ToolOptions.Flag("--json", "Print a JSON array of endpoints (id, address, port, flags, ifindex, dev) instead of one line each.");

    private static Option<bool> OneJson() =>
        ToolOptions.Flag("--json", "Print the endpoint as a JSON object (id, address, port, flags, ifindex, dev) instead of a line.");

    private static Command List()
    {
        Option<bool> json = ListJson();
        var list = new Command("list", "List the endpoints, one line each as ip mptcp endpoint show prints them.") { json };
        list.Aliases.Add("show");
        list.SetAction((parse, _) => ListAsync(parse.GetValue(json), parse.InvocationConfiguration.Output));
        return list;
    }

    private static async Task<int> ListAsync(bool json, TextWriter output)
    {
        await using PathManagerClient pm = await PathManagerArguments.OpenAsync().ConfigureAwait(false);
        IReadOnlyList<MptcpEndpoint> endpoints = await pm.GetEndpointsAsync().ConfigureAwait(false);
        output.Write(json
            ? ToolJson.Serialize<IReadOnlyList<EndpointJson>>([.. endpoints.Select(EndpointJson.Of)]) + Environment.NewLine
            : string.Concat(endpoints.Select(e => e.ToString() + Environment.NewLine)));
        return 0;
    }

    private static Command Add()
    {
        Argument<IPAddress?> address = ToolOptions.AddressArgument("The local address (IPv4 or IPv6) of the endpoint.", ArgumentArity.ExactlyOne);
        address.Validators.Add(result =>
        {
            // The kernel takes these and would announce 0.0.0.0 to peers or open subflows from a group address.
            if (ToolOptions.TryGetValue(result, out IPAddress? value) && value?.NotAHost() is string why)
            {
                result.AddError($"ADDRESS '{value}': {why}; an endpoint is one of this host's unicast addresses");
            }
        });
        Option<int?> id = ToolOptions.OptionalInt("--id", "id", "The endpoint id.", 1, 255, "the kernel picks one");
        Option<int?> port = ToolOptions.OptionalInt("--port", "port",
            "A port for the endpoint; a signal endpoint with a port is announced with it and the kernel listens on it.", 1, 65535, "none");
        Option<string?> dev = ToolOptions.Text("--dev", "interface", "The interface the address belongs to (ip link names it).", "none");
        Option<MptcpEndpointFlags?> flags = PathManagerArguments.Flags();
        Option<bool> json = OneJson();
        var add = new Command("add", "Add an endpoint (as ip mptcp endpoint add) and print it as the kernel now has it.")
        {
            address,
            id,
            port,
            dev,
            flags,
            json,
        };
        add.SetAction(async (parse, _) =>
        {
            string? device = parse.GetValue(dev);
            int ifindex = device is null ? 0 : HostInterfaces.IndexOf(device);
            if (device is not null && ifindex == 0)
            {
                throw new UsageException($"option '--dev': no interface '{device}' here");
            }

            var endpoint = new MptcpEndpoint((byte)(parse.GetValue(id) ?? 0), parse.GetValue(address)!, parse.GetValue(port) ?? 0,
                parse.GetValue(flags) ?? MptcpEndpointFlags.None, ifindex);
            await using PathManagerClient pm = await PathManagerArguments.OpenAsync().ConfigureAwait(false);
            byte assigned = await pm.AddEndpointAsync(endpoint).ConfigureAwait(false);
            Print(await pm.GetEndpointAsync(assigned).ConfigureAwait(false), parse.GetValue(json), parse.InvocationConfiguration.Output);
            return 0;
        });
        return add;
    }

    private static Command Delete()
    {
        Option<int?> id = ToolOptions.RequiredInt("--id", "id", "The id of the endpoint to delete (endpoints list shows it).", 1, 255);
        var delete = new Command("delete", "Delete one endpoint (as ip mptcp endpoint delete); the kernel sends RM_ADDR where it was announced.") { id };
        delete.SetAction(async (parse, _) =>
        {
            byte deleteId = (byte)parse.GetValue(id)!.Value;
            await using (PathManagerClient pm = await PathManagerArguments.OpenAsync().ConfigureAwait(false))
            {
                await pm.DeleteEndpointAsync(deleteId).ConfigureAwait(false);
            }

            parse.InvocationConfiguration.Output.WriteLine($"deleted endpoint id {deleteId}");
            return 0;
        });
        return delete;
    }

    private static Command Flush()
    {
        var flush = new Command("flush", "Delete every endpoint (as ip mptcp endpoint flush).");
        flush.SetAction(async (parse, _) =>
        {
            await using (PathManagerClient pm = await PathManagerArguments.OpenAsync().ConfigureAwait(false))
            {
                await pm.FlushEndpointsAsync().ConfigureAwait(false);
            }

            parse.InvocationConfiguration.Output.WriteLine("flushed all endpoints");
            return 0;
        });
        return flush;
    }

    /// <summary>
    /// <c>endpoints change [ADDRESS] [--id N] [--port P] [--backup|--no-backup] [--fullmesh|--no-fullmesh]</c>, as
    /// <c>ip mptcp endpoint change ... backup|nobackup|fullmesh|nofullmesh</c>. The kernel's SET_FLAGS sets backup and
    /// fullmesh together (one left out is cleared), so the command reads the endpoint first and changes only what is given.
    /// </summary>
    private static Command Change()
    {
        Argument<IPAddress?> address = ToolOptions.AddressArgument("The endpoint's address (or give --id).", ArgumentArity.ZeroOrOne);
        Option<int?> id = ToolOptions.OptionalInt("--id", "id", "The endpoint's id (or give ADDRESS).", 1, 255, "found by ADDRESS");
        Option<int?> port = ToolOptions.OptionalInt("--port", "port",
            "With ADDRESS: the endpoint's port, to choose between endpoints of one address.", 1, 65535, "any port");
        Option<bool> backup = ToolOptions.Flag("--backup", "Make its subflows backup subflows (MP_PRIO on existing ones; ip: backup).");
        Option<bool> noBackup = ToolOptions.Flag("--no-backup", "Make its subflows regular subflows again (ip: nobackup).");
        Option<bool> fullmesh = ToolOptions.Flag("--fullmesh", "Open a subflow from it to every address the peer announces; not for signal endpoints (ip: fullmesh).");
        Option<bool> noFullmesh = ToolOptions.Flag("--no-fullmesh", "Stop opening a subflow to every announced address (ip: nofullmesh).");
        Option<bool> json = OneJson();
        var change = new Command("change",
            "Change an endpoint's backup and fullmesh flags (as ip mptcp endpoint change) and print it as the kernel now has it; " +
            "the flags not given stay as they are.")
        {
            address,
            id,
            port,
            backup,
            noBackup,
            fullmesh,
            noFullmesh,
            json,
        };
        change.Validators.Add(result =>
        {
            // Whether each was given: a given value that failed its own check has its own error already.
            bool hasAddress = result.GetResult(address) is not null, hasId = result.GetResult(id) is not null;
            bool setBackup = result.GetResult(backup) is not null, clearBackup = result.GetResult(noBackup) is not null;
            bool setFullmesh = result.GetResult(fullmesh) is not null, clearFullmesh = result.GetResult(noFullmesh) is not null;
            if (!hasAddress && !hasId)
            {
                result.AddError("endpoints change needs the endpoint: its ADDRESS or --id");
            }

            if (result.GetResult(port) is not null && !hasAddress)
            {
                result.AddError("option '--port' needs ADDRESS (it chooses between endpoints of one address)");
            }

            if (setBackup && clearBackup)
            {
                result.AddError("options '--backup' and '--no-backup' contradict each other: give one");
            }

            if (setFullmesh && clearFullmesh)
            {
                result.AddError("options '--fullmesh' and '--no-fullmesh' contradict each other: give one");
            }

            if (!setBackup && !clearBackup && !setFullmesh && !clearFullmesh)
            {
                result.AddError("say what to change: --backup, --no-backup, --fullmesh or --no-fullmesh");
            }
        });
        change.SetAction(async (parse, _) =>
        {
            bool? wantBackup = parse.GetValue(backup) ? true : parse.GetValue(noBackup) ? false : null;
            bool? wantFullmesh = parse.GetValue(fullmesh) ? true : parse.GetValue(noFullmesh) ? false : null;
            await using PathManagerClient pm = await PathManagerArguments.OpenAsync().ConfigureAwait(false);
            MptcpEndpoint endpoint = Find(await pm.GetEndpointsAsync().ConfigureAwait(false), parse.GetValue(address), parse.GetValue(port), parse.GetValue(id));
            await pm.SetEndpointFlagsAsync(endpoint.Id, ChangedFlags(endpoint.Flags, wantBackup, wantFullmesh)).ConfigureAwait(false);
            Print(await pm.GetEndpointAsync(endpoint.Id).ConfigureAwait(false), parse.GetValue(json), parse.InvocationConfiguration.Output);
            return 0;
        });
        return change;
    }

    /// <summary>
    /// The flags to send with SET_FLAGS: the endpoint's backup and fullmesh, each changed only when asked (null: keep).
    /// Only those two: the kernel ignores the others.
    /// </summary>
    internal static MptcpEndpointFlags ChangedFlags(MptcpEndpointFlags current, bool? backup, bool? fullmesh)
    {
        MptcpEndpointFlags flags = current & ChangeableFlags;
        flags = backup switch
        {
            true => flags | MptcpEndpointFlags.Backup,
            false => flags & ~MptcpEndpointFlags.Backup,
            null => flags,
        };
        return fullmesh switch
        {
            true => flags | MptcpEndpointFlags.Fullmesh,
            false => flags & ~MptcpEndpointFlags.Fullmesh,
            null => flags,
        };
    }

    /// <summary>
    /// The one endpoint that <paramref name="address"/> (and <paramref name="port"/>, when given) and <paramref name="id"/>
    /// (when given) name. None is a failure (exit 1); several for one address are a usage error (choose with --id or --port).
    /// </summary>
    internal static MptcpEndpoint Find(IReadOnlyList<MptcpEndpoint> endpoints, IPAddress? address, int? port, int? id)
    {
        IPAddress? wanted = address?.Unmapped();
        MptcpEndpoint[] matches = [.. endpoints.Where(e =>
            (id is null || e.Id == id) && (wanted is null || e.Address.Equals(wanted)) && (port is null || e.Port == port))];
        string what = string.Join(' ', new[] { wanted?.ToString(), port is null ? null : $"port {port}", id is null ? null : $"id {id}" }.OfType<string>());
        return matches.Length switch
        {
            1 => matches[0],
            0 => throw new CommandFailedException($"no endpoint {what} in this namespace (endpoints list shows them)"),
            _ => throw new UsageException($"several endpoints have {what} (ids {string.Join(", ", matches.Select(e => e.Id))}): choose one with --id or --port"),
        };
    }

    private static void Print(MptcpEndpoint endpoint, bool json, TextWriter output) =>
        output.WriteLine(json ? ToolJson.Serialize(EndpointJson.Of(endpoint)) : endpoint.ToString());
}
