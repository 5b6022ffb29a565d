using System.Net;
using System.Text.Json;
using MptcpAnycast.Cli.Commands;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Tests.Cli;

public sealed class PathManagerCommandLineTests
{
    [Theory]
    [InlineData("announce --token zz --id 1 --address 198.51.100.1", "option '--token' must be a connection token in hex, up to 8 digits (got 'zz')")]
    [InlineData("announce --token 123456789 --id 1 --address 198.51.100.1", "(got '123456789')")]
    [InlineData("announce --token 1a --address 198.51.100.1", "'--id' is required")]
    [InlineData("announce --token 1a --id 0 --address 198.51.100.1", "option '--id' must be a whole number from 1 to 255 (got '0')")]
    [InlineData("announce --token 1a --id 1 --address nowhere", "option '--address' must be an IPv4 or IPv6 address (got 'nowhere')")]
    [InlineData("announce --token 1a --id 1 --address 198.51.100.01", "option '--address' must be an IPv4 or IPv6 address (got '198.51.100.01')")]
    [InlineData("announce --token 1a --id 1 --address 0x7f.1", "option '--address' must be an IPv4 or IPv6 address (got '0x7f.1')")]
    [InlineData("announce --token 1a --id 1 --address 198.51.100.1 --port 70000", "option '--port' must be a whole number from 0 to 65535 (got '70000')")]
    [InlineData("remove --token 1a", "'--id' is required")]
    [InlineData("endpoints add", "Required argument missing")]
    [InlineData("endpoints add 192.0.2.1 --flags signal,turbo", "option '--flags' takes signal,subflow,backup,fullmesh,laminar (got 'turbo')")]
    [InlineData("endpoints add 192.0.2.1 --dev no-such-if0", "option '--dev': no interface 'no-such-if0' here")]
    [InlineData("endpoints add 192.0.2.300", "ADDRESS must be an IPv4 or IPv6 address (got '192.0.2.300')")]
    [InlineData("endpoints add 10", "ADDRESS must be an IPv4 or IPv6 address (got '10')")]
    [InlineData("endpoints add [2001:db8::1]", "ADDRESS must be an IPv4 or IPv6 address (got '[2001:db8::1]')")]
    [InlineData("endpoints delete", "'--id' is required")]
    [InlineData("endpoints frobnicate", "unknown command 'frobnicate'")]
    [InlineData("endpoints list --id 1", "'--id'")]
    [InlineData("limits --subflows 9", "option '--subflows' must be a whole number from 0 to 8 (got '9')")]
    [InlineData("limits extra", "'extra'")]
    [InlineData("monitor --count 0", "option '--count' must be a whole number from 1 to 2147483647 (got '0')")]
    [InlineData("monitor --verbose", "'--verbose'")]
    public async Task Bad_arguments_exit_2_with_a_message_naming_the_problem(string commandLine, string expected)
    {
        (int code, string stdout, string stderr) = await Tool.RunAsync(commandLine.Split(' '));
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        Assert.Contains(expected, stderr);
        Assert.Contains("usage: mptcp-anycast", stderr);
    }

    /// <summary>
    /// Parsed only, never run: the tool runs as root in the test host's namespace, and a check that let one of these
    /// through would add it to this host's endpoints.
    /// </summary>
    [Theory]
    [InlineData("endpoints add 0.0.0.0 --flags signal", "ADDRESS '0.0.0.0': the unspecified address names no host; an endpoint is one of this host's unicast addresses")]
    [InlineData("endpoints add :: --flags subflow", "ADDRESS '::': the unspecified address names no host")]
    [InlineData("endpoints add 224.0.0.1 --flags subflow", "ADDRESS '224.0.0.1': a multicast address names a group")]
    [InlineData("endpoints add ff02::1", "ADDRESS 'ff02::1': a multicast address names a group")]
    [InlineData("endpoints add 255.255.255.255", "ADDRESS '255.255.255.255': the broadcast address names no host")]
    public void Endpoint_addresses_that_are_no_unicast_of_this_host_are_refused(string commandLine, string expected)
    {
        System.CommandLine.ParseResult parse = MptcpAnycast.Cli.CommandLine.ToolCommandLine.Create(Tool.NotRootLab)
            .Parse(commandLine.Split(' '), MptcpAnycast.Cli.CommandLine.ToolCommandLine.Parsing);
        Assert.Contains(parse.Errors, e => e.Message.Contains(expected, StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("SIGNAL", MptcpEndpointFlags.Signal)]
    [InlineData("Signal,Backup", MptcpEndpointFlags.Signal | MptcpEndpointFlags.Backup)]
    [InlineData(" subflow , FullMesh ", MptcpEndpointFlags.Subflow | MptcpEndpointFlags.Fullmesh)]
    [InlineData("laminar", MptcpEndpointFlags.Laminar)]
    public void Endpoint_flags_are_read_in_any_case(string text, MptcpEndpointFlags expected)
    {
        System.CommandLine.ParseResult parse = MptcpAnycast.Cli.CommandLine.ToolCommandLine.Create(Tool.NotRootLab)
            .Parse(["endpoints", "add", "192.0.2.1", "--flags", text], MptcpAnycast.Cli.CommandLine.ToolCommandLine.Parsing);
        Assert.Empty(parse.Errors);
        Assert.Equal(expected, parse.GetValue<MptcpEndpointFlags?>("--flags"));
    }

    [Theory]
    [InlineData("")]
    [InlineData(",")]
    [InlineData(" , ")]
    public void An_empty_flag_list_is_refused_not_read_as_no_flags(string text)
    {
        // Parsed only: run as root, a check that let it through would add the endpoint to this host.
        System.CommandLine.ParseResult parse = MptcpAnycast.Cli.CommandLine.ToolCommandLine.Create(Tool.NotRootLab)
            .Parse(["endpoints", "add", "192.0.2.1", "--flags", text], MptcpAnycast.Cli.CommandLine.ToolCommandLine.Parsing);
        Assert.Contains(parse.Errors, e => e.Message == $"option '--flags' needs one or more of signal,subflow,backup,fullmesh,laminar, comma-separated (got '{text}'); leave it out for none");
    }

    [Theory]
    [InlineData(new[] { "endpoints", "change", "--id", "abc" }, "option '--id' must be a whole number from 1 to 255 (got 'abc')", "say what to change")]
    [InlineData(new[] { "lab", "demo", "--rate", "0", "--seconds", "700" }, "option '--rate' must be a whole number from 1024 to 67108864 (got '0')", "option '--seconds' must be a whole number from 2 to 600 (got '700')")]
    [InlineData(new[] { "lab", "demo", "--seconds", "abc", "--flip-after", "0" }, "(got 'abc')", "option '--flip-after' must be a whole number from 1 to 599 (got '0')")]
    [InlineData(new[] { "endpoints", "change", "1.2.3", "--port", "0" }, "ADDRESS must be an IPv4 or IPv6 address (got '1.2.3')", "option '--port' must be a whole number from 1 to 65535 (got '0')")]
    public async Task Every_bad_value_is_named_not_only_the_first(string[] args, string first, string second)
    {
        (int code, _, string stderr) = await Tool.RunAsync(args);
        Assert.Equal(2, code);
        Assert.Contains(first, stderr);
        Assert.Contains(second, stderr);
    }

    [Fact]
    public async Task The_usage_line_names_the_positional_address()
    {
        (_, _, string stderr) = await Tool.RunAsync("endpoints", "add");
        Assert.Contains("usage: mptcp-anycast endpoints add ADDRESS [options]", stderr);
    }

    [Fact]
    public void Every_path_manager_command_is_registered()
    {
        string[] names = [.. Tool.AllCommands().Select(c => string.Join(' ', c.Words))];
        Assert.Subset(names.ToHashSet(), new HashSet<string>
        {
            "monitor", "limits", "announce", "remove", "check",
            "endpoints", "endpoints list", "endpoints add", "endpoints delete", "endpoints flush", "endpoints change",
        });
    }

    [Fact]
    public void Monitor_json_has_every_attribute_with_numbers_as_numbers_and_camel_case_names()
    {
        var e = new PathManagerEvent
        {
            Type = PathManagerEventType.SubflowEstablished,
            Token = 0xdeadbeef,
            Family = System.Net.Sockets.AddressFamily.InterNetwork,
            LocalId = 1,
            RemoteId = 0,
            Source = new IPEndPoint(IPAddress.Parse("198.51.100.1"), 443),
            Destination = new IPEndPoint(IPAddress.Parse("192.0.2.2"), 40000),
            Backup = false,
            InterfaceIndex = 3,
            ServerSide = true,
        };
        string line = MonitorCommand.Json(e);
        Assert.DoesNotContain('\n', line);
        using JsonDocument json = JsonDocument.Parse(line);
        JsonElement root = json.RootElement;
        Assert.Equal("SF_ESTABLISHED", root.GetProperty("type").GetString());
        Assert.Equal("deadbeef", root.GetProperty("token").GetString());
        Assert.Equal("198.51.100.1", root.GetProperty("saddr").GetString());
        Assert.Equal(443, root.GetProperty("sport").GetInt32());
        Assert.Equal(40000, root.GetProperty("dport").GetInt32());
        Assert.Equal(1, root.GetProperty("locId").GetInt32());
        Assert.Equal(0, root.GetProperty("remId").GetInt32());
        Assert.Equal(3, root.GetProperty("ifindex").GetInt32());
        Assert.Equal(1, root.GetProperty("serverSide").GetInt32());
        Assert.False(root.TryGetProperty("error", out _));
        Assert.All(root.EnumerateObject(), p => Assert.DoesNotContain('_', p.Name));
    }

    [Fact]
    public async Task The_tool_s_path_manager_commands_run_in_a_namespace_of_their_own_in_these_tests()
    {
        await using PathManagerClient pm = await PathManagerArguments.OpenAsync();
        using NetworkNamespace here = NetworkNamespace.OfCurrentThread();
        Assert.NotEqual("", pm.NamespaceId);
        Assert.NotEqual(here.Id, pm.NamespaceId);
        Assert.Empty(await pm.GetEndpointsAsync());
    }
}
