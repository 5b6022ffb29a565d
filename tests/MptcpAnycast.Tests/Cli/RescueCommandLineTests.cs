namespace MptcpAnycast.Tests.Cli;

public sealed class RescueCommandLineTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("rescue-cli").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Theory]
    [InlineData("rescue", "say which command to run: run, status")]
    [InlineData("rescue start", "unknown command 'start'")]
    [InlineData("rescue run", "'--config' is required")]
    [InlineData("rescue status --dir", "'--dir'")]
    [InlineData("rescue run --config /nonexistent/rescue.json", "/nonexistent/rescue.json")]
    public async Task Wrong_rescue_command_lines_exit_2_and_say_why(string commandLine, string expected)
    {
        (int code, string _, string stderr) = await RunAsync(commandLine.Split(' '));
        Assert.Equal(2, code);
        Assert.Contains(expected, stderr);
    }

    [Fact]
    public async Task A_configuration_file_that_is_not_JSON_exits_2_naming_the_file()
    {
        string path = Path.Combine(_directory, "broken.json");
        File.WriteAllText(path, "{ \"Name\": ");
        (int code, _, string stderr) = await RunAsync(["rescue", "run", "--config", path]);
        Assert.Equal(2, code);
        Assert.Contains(path, stderr);
    }

    [Fact]
    public async Task A_bad_setting_in_the_file_exits_2_naming_the_setting_and_nothing_is_attached()
    {
        string path = Path.Combine(_directory, "bad.json");
        File.WriteAllText(path, """{ "Name": "pop-a", "Interface": "lo", "AnycastAddresses": [ "192.0.2.300" ], "UnicastIPv4": "198.51.100.2" }""");
        (int code, _, string stderr) = await RunAsync(["rescue", "run", "--config", path]);
        Assert.Equal(2, code);
        Assert.Contains("rescue:AnycastAddresses:0 '192.0.2.300' is not an IP address", stderr);
    }

    [Fact]
    public async Task The_settings_may_sit_under_MptcpAnycast_Rescue_as_in_appsettings()
    {
        string path = Path.Combine(_directory, "appsettings.json");
        File.WriteAllText(path, """{ "MptcpAnycast": { "Rescue": { "Name": "pop-a", "Interface": "nosuch0" } } }""");
        (int code, _, string stderr) = await RunAsync(["rescue", "run", "--config", path]);
        Assert.Equal(2, code);
        Assert.Contains("MptcpAnycast:Rescue:Interface 'nosuch0'", stderr);
    }

    [Fact]
    public async Task Status_without_a_running_agent_exits_1_and_says_so()
    {
        (int code, string stdout, string stderr) = await RunAsync(["rescue", "status", "--dir", _directory]);
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.Contains("no rescue agent runs on this host", stderr);
    }

    [Fact]
    public async Task Status_prints_what_an_agent_wrote()
    {
        File.WriteAllText(Path.Combine(_directory, "pop-a.json"), $$"""
            { "name": "pop-a", "interface": "eth0", "startedAt": "{{DateTimeOffset.UtcNow:O}}", "writtenAt": "{{DateTimeOffset.UtcNow:O}}",
              "anycast": [ "192.0.2.100" ], "unicast": [ "198.51.100.2" ], "peers": [ "pop-b (203.0.113.2)" ],
              "ownerCapacity": 65536, "pendingLookups": 0, "owners": [ "192.0.2.2:40000 -> 192.0.2.100:443 => 203.0.113.2" ],
              "counters": { "program.tunnelled": 42 } }
            """);
        (int code, string stdout, _) = await RunAsync(["rescue", "status", "--dir", _directory]);
        Assert.Equal(0, code);
        Assert.Contains("rescue agent pop-a on eth0", stdout);
        Assert.Contains("192.0.2.2:40000 -> 192.0.2.100:443 => 203.0.113.2", stdout);
        Assert.Matches(@"program\.tunnelled\s+42", stdout);
        Assert.DoesNotContain("not running", stdout);
    }

    private static Task<(int Code, string Out, string Err)> RunAsync(string[] args) => Tool.RunAsync(args);
}
