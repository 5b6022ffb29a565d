using System.Text.Json;
using MptcpAnycast.Cli;

namespace MptcpAnycast.Tests.Cli;

public sealed class CommandLineTests
{
    private static async Task<(int Code, string Out, string Err)> RunAsync(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = await Program.RunAsync(args, stdout, stderr).WaitAsync(TimeSpan.FromSeconds(30));
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Theory]
    [InlineData]
    [InlineData("bogus")]
    [InlineData("check", "--role", "router")]
    [InlineData("check", "--role")]
    [InlineData("check", "--role", "1")]
    [InlineData("check", "--frobnicate")]
    [InlineData("check", "extra")]
    [InlineData("check", "--json=yes")]
    [InlineData("check", "--json", "--json")]
    public async Task Wrong_arguments_give_usage_and_exit_code_2(params string[] args)
    {
        (int code, string stdout, string stderr) = await RunAsync(args);
        Assert.Equal(2, code);
        Assert.Contains("usage: mptcp-anycast", stderr);
        Assert.DoesNotContain("   at ", stderr); // no stack trace
        Assert.Equal("", stdout);
    }

    [Fact]
    public async Task Bad_role_value_is_named_in_the_error()
    {
        (_, _, string stderr) = await RunAsync("check", "--role", "router");
        Assert.Contains("'router'", stderr);
        Assert.Contains("server|client", stderr);
    }

    [Fact]
    public async Task Help_prints_every_command_and_exits_0()
    {
        (int code, string stdout, _) = await RunAsync("--help");
        Assert.Equal(0, code);
        foreach (Program.Command command in Program.Commands)
        {
            Assert.Contains(command.Usage, stdout);
        }
    }

    [Fact]
    public async Task Check_json_matches_the_exit_code_and_this_hosts_sysctl()
    {
        (int code, string stdout, _) = await RunAsync("check", "--role", "server", "--json");
        using JsonDocument doc = JsonDocument.Parse(stdout);
        bool ready = doc.RootElement.GetProperty("ready").GetBoolean();
        Assert.Equal(ready ? 0 : 1, code);
        int allowJoin = int.Parse(File.ReadAllText("/proc/sys/net/mptcp/allow_join_initial_addr_port").Trim());
        Assert.Equal(allowJoin, doc.RootElement.GetProperty("host").GetProperty("allowJoinInitialAddrPort").GetInt32());
        JsonElement cflag = doc.RootElement.GetProperty("findings").EnumerateArray().Single(f => f.GetProperty("name").GetString() == "c_flag");
        Assert.Equal(allowJoin == 0 ? "ok" : "warning", cflag.GetProperty("severity").GetString());
    }
}
