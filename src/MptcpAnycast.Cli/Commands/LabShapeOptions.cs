using System.CommandLine;
using MptcpAnycast.Cli.CommandLine;
using MptcpAnycast.Lab;

namespace MptcpAnycast.Cli.Commands;

/// <summary>The options that shape a lab (<see cref="LabOptions"/>), one set per command that builds one.</summary>
internal sealed class LabShapeOptions
{
    private readonly Option<string?> _prefix = LabCommand.Prefix("mpl + the process id");
    private readonly ChoiceOption<LabUnicast> _unicast = new("--unicast",
        "The POPs' unicast addresses, for the subflow that outlives the flip: own (each POP its IPv4 and IPv6 link address), " +
        "shared-ipv4 (one IPv4 address on every POP, a port per POP; IPv6 as own), ipv6-only.", LabUnicast.Own);
    private readonly ChoiceOption<LabClientLimits> _client = new("--client",
        "The client's path manager: accept-add-addr (ip mptcp limits set add_addr_accepted 1), subflow-endpoint (default " +
        "limits, a subflow endpoint on a second address), defaults (ignores ADD_ADDR: the connection dies at the flip).",
        LabClientLimits.AcceptAddAddr, "limits");
    private readonly ChoiceOption<LabPathManager> _pathManager;
    private readonly Option<int>? _pops;
    private readonly Option<bool> _nat = ToolOptions.Flag("--nat", "The router masquerades the client towards the POPs (IPv4 and IPv6).");
    private readonly Option<bool> _firewall = ToolOptions.Flag("--firewall", "The router drops TCP to the POPs' unicast addresses, so no subflow can join.");
    private readonly Option<bool> _stripMptcp = ToolOptions.Flag("--strip-mptcp",
        "The router removes the MPTCP option from every TCP segment, as a middlebox that breaks MPTCP would.");

    /// <param name="pathManager">The default POP path manager: userspace for the runs of the transport, kernel for lab up.</param>
    /// <param name="pops">Whether the command takes --pops (demo and measure flip between A and B only).</param>
    public LabShapeOptions(LabPathManager pathManager, bool pops)
    {
        _pathManager = new ChoiceOption<LabPathManager>("--path-manager",
            "The POPs' net.mptcp.path_manager: kernel (the lab adds signal endpoints, the kernel announces them on every " +
            "connection) or userspace (the MptcpAnycast transport announces per connection).", pathManager);
        if (pops)
        {
            _pops = ToolOptions.Int("--pops", "count", "How many POPs: A and B, or A, B and C.", LabOptions.MinPops, LabOptions.MaxPops, LabOptions.MinPops);
        }
    }

    public void AddTo(Command command)
    {
        command.Add(_prefix);
        if (_pops is not null)
        {
            command.Add(_pops);
        }

        command.Add(_unicast);
        command.Add(_client);
        command.Add(_pathManager);
        command.Add(_nat);
        command.Add(_firewall);
        command.Add(_stripMptcp);
    }

    public LabOptions Read(ParseResult parse)
    {
        var options = new LabOptions
        {
            Nat = parse.GetValue(_nat),
            Firewall = parse.GetValue(_firewall),
            StripMptcp = parse.GetValue(_stripMptcp),
            Pops = _pops is null ? LabOptions.MinPops : parse.GetValue(_pops),
            Unicast = _unicast.Get(parse) ?? LabUnicast.Own,
            Client = _client.Get(parse) ?? LabClientLimits.AcceptAddAddr,
            PathManager = _pathManager.Get(parse) ?? LabPathManager.Kernel,
        };
        return parse.GetValue(_prefix) is string prefix ? options with { Prefix = prefix } : options;
    }
}
