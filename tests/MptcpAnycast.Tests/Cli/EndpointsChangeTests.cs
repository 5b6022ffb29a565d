using System.Net;
using MptcpAnycast.Cli.CommandLine;
using MptcpAnycast.Cli.Commands;
using MptcpAnycast.PathManagement;
using static MptcpAnycast.Interop.MptcpPmConstants;

namespace MptcpAnycast.Tests.Cli;

/// <summary><c>endpoints change</c>: its command line, which endpoint it picks, and the flags it sends with SET_FLAGS.</summary>
public sealed class EndpointsChangeTests
{
    private static readonly MptcpEndpoint Signal = new(1, IPAddress.Parse("198.51.100.2"), 0, MptcpEndpointFlags.Signal, 0);
    private static readonly MptcpEndpoint SubflowBackup = new(2, IPAddress.Parse("192.0.2.3"), 0, MptcpEndpointFlags.Subflow | MptcpEndpointFlags.Backup | MptcpEndpointFlags.Fullmesh, 0);
    private static readonly MptcpEndpoint SignalPort = new(3, IPAddress.Parse("198.51.100.2"), 8443, MptcpEndpointFlags.Signal, 0);

    [Theory]
    [InlineData("endpoints change --backup", "endpoints change needs the endpoint: its ADDRESS or --id")]
    [InlineData("endpoints change 192.0.2.1", "say what to change: --backup, --no-backup, --fullmesh or --no-fullmesh")]
    [InlineData("endpoints change 192.0.2.1 --backup --no-backup", "options '--backup' and '--no-backup' contradict each other")]
    [InlineData("endpoints change --id 2 --fullmesh --no-fullmesh", "options '--fullmesh' and '--no-fullmesh' contradict each other")]
    [InlineData("endpoints change --id 2 --port 443 --backup", "option '--port' needs ADDRESS")]
    [InlineData("endpoints change --id 0 --backup", "option '--id' must be a whole number from 1 to 255 (got '0')")]
    [InlineData("endpoints change 192.0.2.300 --backup", "ADDRESS must be an IPv4 or IPv6 address (got '192.0.2.300')")]
    [InlineData("endpoints change 017.0.0.1 --backup", "ADDRESS must be an IPv4 or IPv6 address (got '017.0.0.1')")]
    [InlineData("endpoints change 1 --backup", "ADDRESS must be an IPv4 or IPv6 address (got '1')")]
    [InlineData("endpoints change 0x7f.1 --backup", "ADDRESS must be an IPv4 or IPv6 address (got '0x7f.1')")]
    [InlineData("endpoints change 192.0.2 --backup", "ADDRESS must be an IPv4 or IPv6 address (got '192.0.2')")]
    [InlineData("endpoints change [::1]:80 --backup", "ADDRESS must be an IPv4 or IPv6 address (got '[::1]:80')")]
    [InlineData("endpoints change fe80::1%lo --backup", "ADDRESS must be an IPv4 or IPv6 address (got 'fe80::1%lo')")]
    [InlineData("endpoints change 192.0.2.1 --backup --backup", "option '--backup' is given twice")]
    [InlineData("endpoints change 192.0.2.1 backup", "'backup'")]
    [InlineData("endpoints change 192.0.2.1 --flags backup", "'--flags'")]
    public async Task Wrong_change_command_lines_exit_2_naming_the_problem(string commandLine, string expected)
    {
        (int code, string stdout, string stderr) = await Tool.RunAsync(commandLine.Split(' '));
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        Assert.Contains(expected, stderr);
        Assert.Contains("usage: mptcp-anycast endpoints change [ADDRESS] [options]", stderr);
    }

    [Theory]
    [InlineData("192.0.2.1")]
    [InlineData("0.0.0.0")]
    [InlineData("2001:db8::1")]
    [InlineData("2001:0db8:0000::0001")]
    [InlineData("::ffff:192.0.2.3")]
    public void An_address_is_the_one_written(string text)
    {
        System.CommandLine.ParseResult parse = ToolCommandLine.Create(Tool.NotRootLab).Parse(["endpoints", "change", text, "--backup"], ToolCommandLine.Parsing);
        Assert.Empty(parse.Errors);
        Assert.Equal(IPAddress.Parse(text), parse.GetValue<IPAddress?>("ADDRESS"));
    }

    [Theory]
    [InlineData(MptcpEndpointFlags.Signal, true, null, MptcpEndpointFlags.Backup)]
    [InlineData(MptcpEndpointFlags.Subflow | MptcpEndpointFlags.Fullmesh, true, null, MptcpEndpointFlags.Backup | MptcpEndpointFlags.Fullmesh)]
    [InlineData(MptcpEndpointFlags.Subflow | MptcpEndpointFlags.Backup | MptcpEndpointFlags.Fullmesh, false, null, MptcpEndpointFlags.Fullmesh)]
    [InlineData(MptcpEndpointFlags.Subflow | MptcpEndpointFlags.Backup, null, true, MptcpEndpointFlags.Backup | MptcpEndpointFlags.Fullmesh)]
    [InlineData(MptcpEndpointFlags.Subflow | MptcpEndpointFlags.Backup | MptcpEndpointFlags.Fullmesh, null, false, MptcpEndpointFlags.Backup)]
    [InlineData(MptcpEndpointFlags.Subflow | MptcpEndpointFlags.Backup, false, true, MptcpEndpointFlags.Fullmesh)]
    public void Only_the_flags_asked_for_change_the_other_stays_as_the_endpoint_has_it(
        MptcpEndpointFlags current, bool? backup, bool? fullmesh, MptcpEndpointFlags sent)
    {
        // SET_FLAGS sets backup and fullmesh together: the one not asked for must be sent as the endpoint has it.
        Assert.Equal(sent, EndpointsCommand.ChangedFlags(current, backup, fullmesh));
    }

    [Fact]
    public void The_endpoint_is_found_by_id_by_address_or_by_address_and_port()
    {
        MptcpEndpoint[] endpoints = [Signal, SubflowBackup, SignalPort];
        Assert.Same(SubflowBackup, EndpointsCommand.Find(endpoints, null, null, 2));
        Assert.Same(SubflowBackup, EndpointsCommand.Find(endpoints, IPAddress.Parse("::ffff:192.0.2.3"), null, null));
        Assert.Same(SignalPort, EndpointsCommand.Find(endpoints, IPAddress.Parse("198.51.100.2"), 8443, null));
        Assert.Same(Signal, EndpointsCommand.Find(endpoints, IPAddress.Parse("198.51.100.2"), null, 1));

        UsageException several = Assert.Throws<UsageException>(() => EndpointsCommand.Find(endpoints, IPAddress.Parse("198.51.100.2"), null, null));
        Assert.Equal("several endpoints have 198.51.100.2 (ids 1, 3): choose one with --id or --port", several.Message);
        CommandFailedException none = Assert.Throws<CommandFailedException>(() => EndpointsCommand.Find(endpoints, IPAddress.Parse("192.0.2.9"), null, null));
        Assert.Equal("no endpoint 192.0.2.9 in this namespace (endpoints list shows them)", none.Message);
        Assert.Throws<CommandFailedException>(() => EndpointsCommand.Find(endpoints, IPAddress.Parse("192.0.2.3"), null, 1));
    }

    [Fact]
    public void Set_flags_for_an_endpoint_is_encoded_byte_for_byte_by_id_with_the_flags()
    {
        byte[] buffer = new byte[MptcpPmMessages.MaxRequestSize];
        int length = MptcpPmMessages.WriteEndpointById(buffer, familyId: 28, MPTCP_PM_CMD_SET_FLAGS, sequence: 7, id: 2,
            (uint)EndpointsCommand.ChangedFlags(SubflowBackup.Flags, backup: false, fullmesh: null));

        byte[] expected =
        [
            40, 0, 0, 0, 28, 0, 5, 0, 7, 0, 0, 0, 0, 0, 0, 0, // nlmsghdr: length 40, family 28, REQUEST|ACK, seq 7
            7, 1, 0, 0,                                      // genlmsghdr: MPTCP_PM_CMD_SET_FLAGS (7), version 1
            20, 0, 1, 0x80,                                  // ADDR, nested
            5, 0, 2, 0, 2, 0, 0, 0,                          // ID 2: the kernel looks the endpoint up by id (no family)
            8, 0, 6, 0, 8, 0, 0, 0,                          // FLAGS = FULLMESH: backup cleared, fullmesh kept
        ];
        Assert.Equal(expected, buffer[..length]);
    }

    [Fact]
    public async Task Change_help_names_each_ip_word()
    {
        (int code, string stdout, _) = await Tool.RunAsync("endpoints", "change", "--help");
        Assert.Equal(0, code);
        foreach (string word in new[] { "ip: backup", "ip: nobackup", "ip: fullmesh", "ip: nofullmesh" })
        {
            Assert.Contains(word, stdout);
        }
    }
}
