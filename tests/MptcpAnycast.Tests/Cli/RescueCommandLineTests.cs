using System.Globalization;
using System.Text.Json;
using MptcpAnycast.Cli.CommandLine;
using MptcpAnycast.Cli.Commands;

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

    [Theory]
    [InlineData("nosuchdir/agent.log", "cannot open '{0}/nosuchdir/agent.log': no such directory '{0}/nosuchdir'")]
    [InlineData("", "cannot open '{0}': it is a directory")]
    public async Task A_log_that_cannot_be_opened_exits_2_naming_the_file_before_the_settings_are_read(string name, string expected)
    {
        // The settings would fail too (no such interface): the log is the first thing the command opens.
        string config = Settings("rescue.json");
        string log = name.Length == 0 ? _directory : Path.Combine(_directory, name);
        (int code, string stdout, string stderr) = await RunAsync(["rescue", "run", "--config", config, "--log", log]);
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        Assert.Contains($"mptcp-anycast rescue run: option '--log': {string.Format(CultureInfo.InvariantCulture, expected, _directory)}", stderr);
        Assert.DoesNotContain("nosuch0", stderr);
        Assert.DoesNotContain("   at ", stderr);
    }

    [Theory]
    [InlineData("--log", "option '--log': cannot open '': the name is empty")]
    [InlineData("--config", "option '--config': cannot open '': the name is empty")]
    public async Task An_empty_file_name_exits_2_naming_the_option(string option, string expected)
    {
        string[] args = option == "--log" ? ["rescue", "run", "--config", Settings("rescue.json"), "--log", ""] : ["rescue", "run", "--config", ""];
        (int code, _, string stderr) = await RunAsync(args);
        Assert.Equal(2, code);
        Assert.Contains(expected, stderr);
        Assert.Contains("usage: mptcp-anycast rescue run", stderr);
    }

    [Fact]
    public async Task A_directory_as_the_configuration_file_is_named_as_a_directory()
    {
        string path = Path.Combine(_directory, "rescue.json");
        Directory.CreateDirectory(path);
        (int code, _, string stderr) = await RunAsync(["rescue", "run", "--config", path]);
        Assert.Equal(2, code);
        Assert.Contains($"option '--config': cannot open '{path}': it is a directory", stderr);
    }

    [Fact]
    public async Task A_configuration_file_whose_name_starts_with_a_dot_is_read()
    {
        // The settings are read (their interface is refused), not reported missing.
        string path = Settings(".rescue.json");
        (int code, _, string stderr) = await RunAsync(["rescue", "run", "--config", path]);
        Assert.Equal(2, code);
        Assert.Contains("rescue:Interface 'nosuch0'", stderr);
        Assert.DoesNotContain("not found", stderr);
    }

    [Fact]
    public async Task A_log_FIFO_that_nothing_reads_is_refused_at_once_and_one_with_a_reader_takes_the_lines()
    {
        string config = Settings("rescue.json");
        string fifo = MakeFifo("agent.log");
        (int code, string stdout, string stderr) = await RunAsync(["rescue", "run", "--config", config, "--log", fifo]);
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        Assert.Contains($"option '--log': cannot open '{fifo}': it is a FIFO that nothing reads from", stderr);

        // A pipe to a logger: the reader is there first, the agent's lines reach it.
        using var reader = new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(OpenNonBlocking(fifo), ownsHandle: true), FileAccess.Read);
        (code, _, stderr) = await RunAsync(["rescue", "run", "--config", config, "--log", fifo]);
        Assert.Equal(2, code);
        Assert.DoesNotContain("--log", stderr);
        byte[] buffer = new byte[4096];
        int read = reader.Read(buffer);
        Assert.Contains("nosuch0", System.Text.Encoding.UTF8.GetString(buffer, 0, read));
    }

    [Fact]
    public async Task A_configuration_FIFO_that_nothing_writes_to_is_refused_at_once_instead_of_waiting_forever()
    {
        string fifo = MakeFifo("rescue.fifo");
        (int code, string stdout, string stderr) = await RunAsync(["rescue", "run", "--config", fifo]);
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        Assert.Contains($"--config {fifo}: the file is empty (a FIFO that nothing wrote to)", stderr);
    }

    [Fact]
    public async Task A_configuration_from_a_pipe_is_read_as_a_shells_process_substitution_gives_it()
    {
        // <(cat rescue.json) is /dev/fd/N, the read end of a pipe whose writer has written and closed.
        using var pipe = new System.IO.Pipes.AnonymousPipeServerStream(System.IO.Pipes.PipeDirection.Out);
        using var reader = new System.IO.Pipes.AnonymousPipeClientStream(System.IO.Pipes.PipeDirection.In, pipe.ClientSafePipeHandle);
        pipe.Write(File.ReadAllBytes(Settings("rescue.json")));
        pipe.Close();
        string path = $"/proc/self/fd/{reader.SafePipeHandle.DangerousGetHandle()}";

        (int code, _, string stderr) = await RunAsync(["rescue", "run", "--config", path]);
        Assert.Equal(2, code);
        Assert.Contains("rescue:Interface 'nosuch0'", stderr); // read whole: the settings themselves are judged
    }

    [Fact]
    public async Task A_status_FIFO_in_the_status_directory_is_named_and_does_not_hold_the_command()
    {
        WriteStatus("pop-a");
        string fifo = MakeFifo("pop-b.json");
        (int code, string stdout, string stderr) = await RunAsync(["rescue", "status", "--dir", _directory]);
        Assert.Equal(0, code);
        Assert.Contains("rescue agent pop-a on eth0", stdout);
        Assert.Contains($"{fifo}: the file is empty (a FIFO that nothing wrote to)", stderr);
    }

    [Theory]
    [InlineData("/dev/zero")]
    [InlineData("oversized")]
    public async Task A_configuration_that_does_not_end_or_is_far_too_large_is_refused_after_1_MiB(string which)
    {
        string path = which;
        if (which == "oversized")
        {
            path = Path.Combine(_directory, "big.json");
            File.WriteAllText(path, "{ \"Name\": \"pop-a\"" + new string(' ', RescueCommand.MaxConfigBytes) + "}");
        }

        (int code, _, string stderr) = await RunAsync(["rescue", "run", "--config", path]);
        Assert.Equal(2, code);
        Assert.Contains($"--config {path}: more than 1 MiB; a rescue configuration is a few KiB", stderr);
    }

    [Theory]
    [InlineData("/dev/full")] // a full disk
    [InlineData("/proc/version")] // opens, then refuses every write
    public async Task A_log_that_refuses_lines_does_not_hide_why_the_agent_did_not_start(string log)
    {
        string path = Path.Combine(_directory, "rescue.json");
        File.WriteAllText(path, """{ "Name": "", "Interface": "eth0" }""");
        (int code, _, string stderr) = await RunAsync(["rescue", "run", "--config", path, "--log", log]);
        Assert.Equal(2, code);
        Assert.Contains($"{path}: rescue:Name is empty", stderr);
        Assert.Contains($"--log {log}: cannot write: ", stderr);
    }

    [Fact]
    public void A_log_that_stops_taking_lines_is_said_once_and_the_lines_go_to_the_console()
    {
        var console = new StringWriter();
        var error = new StringWriter();
        using (var log = new AgentLog("/dev/full", console, error))
        {
            log.WriteLine("first");
            log.WriteProblem("a problem said on stderr anyway");
            log.WriteLine("second");
        }

        Assert.Equal($"first{Environment.NewLine}second{Environment.NewLine}", console.ToString());
        Assert.Single(error.ToString().Split(Environment.NewLine, StringSplitOptions.RemoveEmptyEntries), l => l.Contains("--log /dev/full: cannot write: ", StringComparison.Ordinal));
    }

    [Fact]
    public void Why_a_file_cannot_be_opened_is_said_in_words()
    {
        // Root is not stopped by permissions: RescueCommandLinePermissionTests (lab) runs the tool as nobody for those.
        Assert.Equal("permission denied", ToolFiles.Problem("/etc/shadow", new UnauthorizedAccessException("Access to the path '/etc/shadow' is denied.")));
        Assert.Equal("it is a directory", ToolFiles.Problem(_directory, new UnauthorizedAccessException()));
        Assert.Equal("no such file", ToolFiles.Problem("/x.json", new FileNotFoundException()));
        Assert.Null(ToolFiles.Problem("/x.json", new InvalidOperationException()));
    }

    [Theory]
    [InlineData("""{ "Name": "pop-a", "Port": "abc" }""", "rescue:Port 'abc' is not a UDP port (1-65535)")]
    [InlineData("""{ "Name": "pop-a", "Port": "99999999999" }""", "rescue:Port '99999999999' is not a UDP port (1-65535)")]
    [InlineData("""{ "Name": "pop-a", "AnycastAddresses": "192.0.2.100" }""", "rescue:AnycastAddresses '192.0.2.100' is a list: write rescue:AnycastAddresses:0=192.0.2.100")]
    [InlineData("""{ "MptcpAnycast": { "Rescue": { "Name": "pop-a", "LookupTimeout": "250ms" } } }""", "MptcpAnycast:Rescue:LookupTimeout '250ms' is not a time span")]
    [InlineData("""{ "Name": "pop-a", "Peers": { "pop-b": { "Name": "pop-b" } } }""", "rescue:Peers is a list, not an object ('pop-b' is not an entry's number)")]
    [InlineData("""{ "MptcpAnycast": { "Rescue": { "Name": "pop-a", "Port": [ 5000 ] } } }""", "MptcpAnycast:Rescue:Port takes one value, not a list or an object")]
    [InlineData("""{ "Name": "pop-a", "Logging": { "LogLevel": "Debug" } }""", "rescue:Logging is not a rescue setting")]
    [InlineData("{\n  \"Name\": \"pop-a\",\n}}", "not JSON: '}' is invalid after a single JSON value. Expected end of data. (line 3, byte 2)")]
    [InlineData("{ \"Name\": ", "not JSON: Expected depth to be zero at the end of the JSON payload. There is an open JSON object or array that should be closed. (line 1, byte 11)")]
    [InlineData("", "the file is empty")]
    [InlineData("[ 1, 2 ]", "Top-level JSON element must be an object")]
    public async Task A_file_the_settings_cannot_be_read_from_exits_2_saying_where(string text, string expected)
    {
        string path = Path.Combine(_directory, "rescue.json");
        File.WriteAllText(path, text);
        (int code, string stdout, string stderr) = await RunAsync(["rescue", "run", "--config", path]);
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        Assert.Contains($"--config {path}: ", stderr);
        Assert.Contains(expected, stderr);
        Assert.DoesNotContain("Failed to", stderr);
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
            { "name": "pop-a", "interface": "eth0", "attachment": "tcx", "startedAt": "{{DateTimeOffset.UtcNow:O}}", "writtenAt": "{{DateTimeOffset.UtcNow:O}}",
              "anycast": [ "192.0.2.100" ], "unicast": [ "198.51.100.2" ], "peers": [ "pop-b (203.0.113.2)" ],
              "ownerCapacity": 65536, "pendingLookups": 0, "owners": [ "192.0.2.2:40000 -> 192.0.2.100:443 => 203.0.113.2" ],
              "counters": { "program.tunnelled": 42 } }
            """);
        (int code, string stdout, _) = await RunAsync(["rescue", "status", "--dir", _directory]);
        Assert.Equal(0, code);
        Assert.Contains("rescue agent pop-a on eth0 (tcx)", stdout);
        Assert.Contains("192.0.2.2:40000 -> 192.0.2.100:443 => 203.0.113.2", stdout);
        Assert.Matches(@"program\.tunnelled\s+42", stdout);
        Assert.DoesNotContain("not running", stdout);
    }

    [Fact]
    public async Task Status_prints_no_terminal_control_from_a_status_file()
    {
        // An escape sequence (recolour, retitle the window), a C1 CSI, a carriage return and a bidirectional override.
        File.WriteAllText(Path.Combine(_directory, "pop-a.json"), $$"""
            { "name": "pop-a\u001b]0;owned\u0007", "interface": "eth0\r", "attachment": "tcx\u009b2J", "writtenAt": "{{DateTimeOffset.UtcNow:O}}",
              "anycast": [ "192.0.2.100\u202e" ], "unicast": [ "198.51.100.2" ], "peers": [ "pop-b\u001b[31m" ],
              "ownerCapacity": 65536, "pendingLookups": 0, "owners": [ "\u001b[2K" ],
              "counters": { "program.\u001b[8mtunnelled": 42 } }
            """);
        string badName = Path.Combine(_directory, "pop-\u001b[1m.json");
        File.WriteAllText(badName, "{");

        (int code, string stdout, string stderr) = await RunAsync(["rescue", "status", "--dir", _directory]);
        Assert.Equal(0, code);
        foreach (char c in "\u001b\u0007\r\u009b\u202e")
        {
            Assert.DoesNotContain(c, stdout);
            Assert.DoesNotContain(c, stderr);
        }

        Assert.Contains(@"rescue agent pop-a\u001b]0;owned\u0007 on eth0\u000d (tcx\u009b2J)", stdout);
        Assert.Contains(@"192.0.2.100\u202e", stdout);
        Assert.Contains(@"program.\u001b[8mtunnelled", stdout);
        Assert.Contains(@"pop-\u001b[1m.json: not JSON", stderr);

        // --json keeps the text as the agent wrote it, in JSON's escapes.
        (code, stdout, _) = await RunAsync(["rescue", "status", "--dir", _directory, "--json"]);
        Assert.Equal(0, code);
        Assert.DoesNotContain('\u001b', stdout);
        using JsonDocument json = JsonDocument.Parse(stdout);
        Assert.Equal("pop-a\u001b]0;owned\u0007", json.RootElement.GetProperty("name").GetString());
    }

    [Fact]
    public async Task A_status_file_with_a_byte_order_mark_is_read()
    {
        WriteStatus("pop-a");
        string path = Path.Combine(_directory, "pop-a.json");
        File.WriteAllBytes(path, [0xef, 0xbb, 0xbf, .. File.ReadAllBytes(path)]);
        (int code, string stdout, string stderr) = await RunAsync(["rescue", "status", "--dir", _directory]);
        Assert.Equal(0, code);
        Assert.Equal("", stderr);
        Assert.Contains("rescue agent pop-a on eth0", stdout);
    }

    [Theory]
    [InlineData("bad UTF-8", "not a rescue agent's status: not valid UTF-8")]
    [InlineData("lone surrogate", "not a rescue agent's status: ")]
    [InlineData("endless", "more than 16 MiB, not a rescue agent's status")]
    public async Task A_status_file_that_cannot_be_text_or_never_ends_is_named_and_the_other_agents_are_shown(string kind, string expected)
    {
        WriteStatus("pop-a");
        WriteStatus("pop-b");
        string damaged = Path.Combine(_directory, "pop-b.json");
        byte[] good = File.ReadAllBytes(damaged);
        int at = Array.IndexOf(good, (byte)'e', Array.IndexOf(good, (byte)'"', 20)); // a byte inside a text
        switch (kind)
        {
            case "bad UTF-8":
                good[at] = 0xff;
                File.WriteAllBytes(damaged, good);
                break;
            case "lone surrogate":
                File.WriteAllText(damaged, System.Text.Encoding.UTF8.GetString(good).Replace("\"eth0\"", "\"\\ud800\"", StringComparison.Ordinal));
                break;
            default:
                File.Delete(damaged);
                File.CreateSymbolicLink(damaged, "/dev/zero");
                break;
        }

        (int code, string stdout, string stderr) = await RunAsync(["rescue", "status", "--dir", _directory]);
        Assert.Equal(0, code);
        Assert.Contains("rescue agent pop-a on eth0", stdout);
        Assert.Contains($"mptcp-anycast rescue status: {damaged}: {expected}", stderr);
        Assert.DoesNotContain("   at ", stderr);
    }

    [Theory]
    [InlineData("{ \"name\": ", "not JSON: ")]
    [InlineData("", "the file is empty")]
    [InlineData("[ ]", "not a rescue agent's status: an array, not an object")]
    [InlineData("""{ "name": "pop-b" }""", "not a rescue agent's status: no 'interface'")]
    [InlineData("""{ "name": "pop-b", "interface": "eth0", "writtenAt": "yesterday" }""", "not a rescue agent's status: 'writtenAt' must be a time (got \"yesterday\")")]
    [InlineData("""{ "name": 7 }""", "not a rescue agent's status: 'name' must be a string (got 7)")]
    [InlineData("""{ "name": "pop-b", "interface": "eth0", "attachment": 3 }""", "not a rescue agent's status: 'attachment' must be a string (got 3)")]
    public async Task A_damaged_status_file_is_named_with_what_is_wrong_and_the_other_agents_are_shown(string text, string expected)
    {
        WriteStatus("pop-a");
        string damaged = Path.Combine(_directory, "pop-b.json");
        File.WriteAllText(damaged, text);

        (int code, string stdout, string stderr) = await RunAsync(["rescue", "status", "--dir", _directory]);
        Assert.Equal(0, code);
        Assert.Contains("rescue agent pop-a on eth0", stdout);
        Assert.Contains($"mptcp-anycast rescue status: {damaged}: {expected}", stderr);
        Assert.DoesNotContain("   at ", stderr);

        (code, stdout, stderr) = await RunAsync(["rescue", "status", "--dir", _directory, "--json"]);
        Assert.Equal(0, code);
        using JsonDocument json = JsonDocument.Parse(stdout);
        Assert.Equal("pop-a", json.RootElement.GetProperty("name").GetString());
        Assert.Contains($"{damaged}: {expected}", stderr);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Status_exits_1_when_no_status_file_can_be_read(bool json)
    {
        string damaged = Path.Combine(_directory, "pop-a.json");
        File.WriteAllText(damaged, "{");
        (int code, string stdout, string stderr) = await RunAsync(["rescue", "status", "--dir", _directory, .. json ? ["--json"] : Array.Empty<string>()]);
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.Contains($"{damaged}: not JSON: ", stderr);
        Assert.Contains($"no status could be read from {damaged}", stderr);
    }

    [Fact]
    public async Task Status_json_prints_each_agent_on_one_line()
    {
        WriteStatus("pop-a");
        WriteStatus("pop-b");
        (int code, string stdout, _) = await RunAsync(["rescue", "status", "--dir", _directory, "--json"]);
        Assert.Equal(0, code);
        Assert.Equal(1, stdout.Count(c => c == '\n'));
        using JsonDocument json = JsonDocument.Parse(stdout);
        Assert.Equal(["pop-a", "pop-b"], json.RootElement.EnumerateArray().Select(a => a.GetProperty("name").GetString()));
    }

    [Fact]
    public async Task Status_dir_must_name_a_directory()
    {
        (int code, _, string stderr) = await RunAsync(["rescue", "status", "--dir", ""]);
        Assert.Equal(2, code);
        Assert.Contains("option '--dir' must name a directory (got '')", stderr);

        string file = Settings("rescue.json");
        (code, _, stderr) = await RunAsync(["rescue", "status", "--dir", file]);
        Assert.Equal(2, code);
        Assert.Contains($"option '--dir': '{file}' is a file, not a directory", stderr);
    }

    /// <summary>Writes what a running agent named <paramref name="name"/> writes, indented as the agent does.</summary>
    private void WriteStatus(string name) => File.WriteAllText(Path.Combine(_directory, name + ".json"), $$"""
        {
          "name": "{{name}}", "interface": "eth0", "startedAt": "{{DateTimeOffset.UtcNow:O}}", "writtenAt": "{{DateTimeOffset.UtcNow:O}}",
          "anycast": [ "192.0.2.100" ], "unicast": [ "198.51.100.2" ], "peers": [ ],
          "ownerCapacity": 65536, "pendingLookups": 0, "owners": [ ], "counters": { "program.tunnelled": 42 }
        }
        """);

    /// <summary>Writes settings the agent refuses (no such interface) before it loads anything into the kernel.</summary>
    private string Settings(string name)
    {
        string path = Path.Combine(_directory, name);
        File.WriteAllText(path, """{ "Name": "pop-a", "Interface": "nosuch0", "AnycastAddresses": [ "192.0.2.100" ], "UnicastIPv4": "198.51.100.2" }""");
        return path;
    }

    private static unsafe int OpenNonBlocking(string path)
    {
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes)
        {
            int fd = Tmds.Linux.LibC.open(p, Tmds.Linux.LibC.O_RDONLY | Tmds.Linux.LibC.O_NONBLOCK | Tmds.Linux.LibC.O_CLOEXEC, 0);
            Assert.True(fd >= 0);
            return fd;
        }
    }

    private unsafe string MakeFifo(string name)
    {
        string path = Path.Combine(_directory, name);
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes)
        {
            Assert.Equal(0, Tmds.Linux.LibC.mkfifo(p, 0x180)); // 0600
        }

        return path;
    }

    private static Task<(int Code, string Out, string Err)> RunAsync(string[] args) => Tool.RunAsync(args);
}
