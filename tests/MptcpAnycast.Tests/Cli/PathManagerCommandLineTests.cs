using System.Net;
using System.Text.Json;
using MptcpAnycast.Cli;
using MptcpAnycast.Cli.Commands;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Tests.Cli;

public sealed class PathManagerCommandLineTests
{
    [Theory]
    [InlineData("announce --token zz --id 1 --address 198.51.100.1", "'--token'")]
    [InlineData("announce --token 123456789 --id 1 --address 198.51.100.1", "'--token'")]
    [InlineData("announce --token 1a --address 198.51.100.1", "'--id' is required")]
    [InlineData("announce --token 1a --id 0 --address 198.51.100.1", "'--id' must be")]
    [InlineData("announce --token 1a --id 1 --address nowhere", "'--address' must be")]
    [InlineData("announce --token 1a --id 1 --address 198.51.100.1 --port 70000", "'--port'")]
    [InlineData("remove --token 1a", "'--id' is required")]
    [InlineData("endpoints add", "needs an ADDRESS")]
    [InlineData("endpoints add 192.0.2.1 --flags signal,turbo", "'turbo'")]
    [InlineData("endpoints add 192.0.2.1 --dev no-such-if0", "no interface")]
    [InlineData("endpoints delete", "'--id' is required")]
    [InlineData("endpoints frobnicate", "unknown action")]
    [InlineData("limits --subflows 9", "'--subflows'")]
    [InlineData("limits extra", "unexpected argument")]
    [InlineData("monitor --count 0", "'--count'")]
    [InlineData("monitor --verbose", "unknown option")]
    public async Task Bad_arguments_exit_2_with_a_message_naming_the_problem(string commandLine, string expected)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = await Program.RunAsync(commandLine.Split(' '), stdout, stderr).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(2, code);
        Assert.Contains(expected, stderr.ToString());
        Assert.Contains("usage: mptcp-anycast", stderr.ToString());
    }

    [Fact]
    public void Every_path_manager_command_is_registered()
    {
        string[] names = [.. Program.Commands.Select(c => c.Name)];
        Assert.Subset(names.ToHashSet(), new HashSet<string> { "monitor", "endpoints", "limits", "announce", "remove", "check" });
    }

    [Fact]
    public void Monitor_json_has_every_attribute_with_numbers_as_numbers()
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
        using JsonDocument json = JsonDocument.Parse(MonitorCommand.Json(e));
        JsonElement root = json.RootElement;
        Assert.Equal("SF_ESTABLISHED", root.GetProperty("type").GetString());
        Assert.Equal("deadbeef", root.GetProperty("token").GetString());
        Assert.Equal("198.51.100.1", root.GetProperty("saddr").GetString());
        Assert.Equal(443, root.GetProperty("sport").GetInt32());
        Assert.Equal(40000, root.GetProperty("dport").GetInt32());
        Assert.Equal(0, root.GetProperty("rem_id").GetInt32());
        Assert.Equal(3, root.GetProperty("if_idx").GetInt32());
        Assert.Equal(1, root.GetProperty("server_side").GetInt32());
        Assert.False(root.TryGetProperty("error", out _));
    }
}
