using System.CommandLine;
using System.Reflection;
using System.Text.Json;
using MptcpAnycast.Cli;
using MptcpAnycast.Cli.CommandLine;
using MptcpAnycast.Cli.Commands;
using MptcpAnycast.Host;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Tests.Cli;

public sealed class CommandLineTests
{
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
    [InlineData("--version", "check")]
    [InlineData("help", "no-such-command")]
    public async Task Wrong_arguments_give_usage_on_stderr_and_exit_code_2(params string[] args)
    {
        (int code, string stdout, string stderr) = await Tool.RunAsync(args);
        Assert.Equal(2, code);
        Assert.Contains("usage: mptcp-anycast", stderr);
        Assert.DoesNotContain("   at ", stderr); // no stack trace
        Assert.Equal("", stdout);
    }

    [Fact]
    public async Task Bad_role_value_is_named_in_the_error()
    {
        (_, _, string stderr) = await Tool.RunAsync("check", "--role", "router");
        Assert.StartsWith("mptcp-anycast check: option '--role' must be one of server|client (got 'router')", stderr);
    }

    [Fact]
    public async Task An_unknown_command_is_named_on_stderr_with_the_closest_command()
    {
        (int code, string stdout, string stderr) = await Tool.RunAsync("chek", "--json");
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        Assert.StartsWith("mptcp-anycast: unknown command 'chek' (did you mean 'check'?)", stderr);
        Assert.Contains("usage: mptcp-anycast <check|monitor|endpoints|limits|announce|remove|rescue|lab|help>", stderr);
    }

    [Fact]
    public async Task A_command_that_needs_a_subcommand_lists_them_all()
    {
        (int code, _, string stderr) = await Tool.RunAsync("lab");
        Assert.Equal(2, code);
        Assert.Contains("say which command to run: demo, measure, up, flip, status, down", stderr);
        Assert.DoesNotContain("\n  serve ", stderr); // the POP server is the lab's own, hidden
    }

    [Fact]
    public async Task Help_lists_every_command_with_its_summary_and_exits_0()
    {
        (int code, string stdout, string stderr) = await Tool.RunAsync("--help");
        Assert.Equal(0, code);
        Assert.Equal("", stderr);
        foreach ((string[] words, Command command) in Tool.AllCommands().Where(c => c.Words.Length == 1))
        {
            Assert.Contains(words[0], stdout);
            Assert.Contains(Normalize(command.Description!), Normalize(stdout));
        }

        Assert.Contains("Exit codes:", stdout);
        Assert.Contains("2  wrong command line", stdout);
    }

    [Fact]
    public async Task Version_prints_the_tools_informational_version()
    {
        (int code, string stdout, string stderr) = await Tool.RunAsync("--version");
        string expected = typeof(ToolCommandLine).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion;
        Assert.Equal(0, code);
        Assert.Equal("", stderr);
        Assert.Equal(expected, stdout.Trim());
        Assert.Matches(@"^\d+\.\d+\.\d+", stdout);
    }

    [Theory]
    [InlineData("check")]
    [InlineData("endpoints", "change")]
    [InlineData("lab", "demo")]
    [InlineData("rescue", "status")]
    public async Task Help_with_a_topic_is_that_commands_help(params string[] words)
    {
        (int helpCode, string help, _) = await Tool.RunAsync(["help", .. words]);
        (int optionCode, string option, _) = await Tool.RunAsync([.. words, "--help"]);
        (_, string root, _) = await Tool.RunAsync("--help");
        Assert.Equal(0, helpCode);
        Assert.Equal(0, optionCode);
        Assert.Equal(option, help);
        Assert.NotEqual(root, help);
        Assert.Matches($@"Usage: \S+ {string.Join(' ', words)} .*\[options\]", Normalize(help)); // the tool's name is the test host's here
    }

    /// <summary>
    /// Every command's --help: the command's description, and each option's row has its description and either says
    /// it is required or shows its default (a switch has neither).
    /// </summary>
    [Fact]
    public async Task Every_commands_help_describes_each_option_with_its_default()
    {
        int options = 0;
        foreach ((string[] words, Command command) in Tool.AllCommands().Where(c => !c.Command.Hidden))
        {
            (int code, string stdout, string stderr) = await Tool.RunAsync([.. words, "--help"]);
            Assert.True(code == 0, $"{string.Join(' ', words)} --help exited {code}: {stderr}");
            Assert.False(string.IsNullOrWhiteSpace(command.Description), $"'{string.Join(' ', words)}' has no description");
            Assert.Contains(Normalize(command.Description!), Normalize(stdout));
            string[] lines = stdout.Split('\n');
            foreach (Option option in command.Options.Where(o => !o.Hidden))
            {
                string what = $"'{string.Join(' ', words)} {option.Name}'";
                Assert.False(string.IsNullOrWhiteSpace(option.Description), $"{what} has no description");
                string row = Assert.Single(lines, l => IsRowOf(l, option.Name));
                Assert.Contains(option.Description!, row);
                bool takesValue = option.Arity.MaximumNumberOfValues > 0;
                Assert.True(!takesValue || option.Required || row.Contains("[default: ", StringComparison.Ordinal),
                    $"{what} takes a value but --help shows no default: {row}");
                Assert.True(!option.Required || row.Contains("(REQUIRED)", StringComparison.Ordinal), $"{what} is required but --help does not say so: {row}");
                options++;
            }

            foreach (Argument argument in command.Arguments)
            {
                Assert.False(string.IsNullOrWhiteSpace(argument.Description), $"'{string.Join(' ', words)} {argument.Name}' has no description");
                Assert.Contains(argument.Description!, stdout);
            }
        }

        Assert.True(options > 40, $"only {options} options seen");
    }

    [Theory]
    [InlineData("--rate", "bytes per second", "[default: 131072]")]
    [InlineData("--seconds", "2 to 600", "[default: 10]")]
    [InlineData("--flip-after", "less than --seconds", "[default: 4, or half of --seconds when that is less]")]
    [InlineData("--path-manager", "userspace", "[default: userspace]")]
    [InlineData("--after-join", "migrate-to-unicast", "[default: prefer-unicast")]
    public async Task Lab_demo_help_gives_units_bounds_and_defaults(string option, string said, string shown)
    {
        (_, string stdout, _) = await Tool.RunAsync("lab", "demo", "--help");
        string row = Assert.Single(stdout.Split('\n'), l => IsRowOf(l, option));
        Assert.Contains(said, row);
        Assert.Contains(shown, row);
    }

    [Theory]
    [InlineData("up", "--prefix", "never")]
    [InlineData("demo", "--prefix", "never")]
    [InlineData("measure", "--prefix", "never")]
    [InlineData("status")]
    public async Task The_lab_refuses_without_root_on_stderr_with_exit_1(params string[] args)
    {
        (int code, string stdout, string stderr) = await Tool.RunAsync(["lab", .. args]);
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.StartsWith("mptcp-anycast lab: refused:", stderr);
        Assert.Contains("needs root", stderr);
    }

    [Theory]
    [InlineData("lab demo --flip-after 10", "option '--flip-after' must be a whole number from 1 to 9", "(got '10')")]
    [InlineData("lab demo --seconds 4 --flip-after 4", "from 1 to 3", "(got '4')")]
    [InlineData("lab demo --flip-after soon", "option '--flip-after' must be a whole number from 1 to 599", "(got 'soon')")]
    [InlineData("lab demo --seconds forever --flip-after 3", "option '--seconds' must be a whole number from 2 to 600", "(got 'forever')")]
    [InlineData("lab demo --rate 100", "option '--rate' must be a whole number from 1024 to 67108864", "(got '100')")]
    [InlineData("lab demo --after-join sometimes", "option '--after-join' must be one of keep-both|prefer-unicast|migrate-to-unicast", "(got 'sometimes')")]
    [InlineData("lab measure --flips 0", "option '--flips' must be a whole number from 1 to 500", "(got '0')")]
    [InlineData("lab up --unicast carrier-pigeon", "option '--unicast' must be one of own|shared-ipv4|ipv6-only", "(got 'carrier-pigeon')")]
    [InlineData("lab flip --to d", "option '--to' must be one of a|b|c", "(got 'd')")]
    [InlineData("lab down --prefix has-dash", "the lab prefix must be", "(got 'has-dash')")]
    public async Task Lab_option_values_are_checked_before_the_root_check_naming_the_value(string commandLine, string message, string value)
    {
        (int code, string stdout, string stderr) = await Tool.RunAsync(commandLine.Split(' '));
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        Assert.Contains(message, stderr);
        Assert.Contains(value, stderr);
        Assert.DoesNotContain("refused", stderr);
    }

    [Theory]
    [InlineData("notaurl", "option '--urls' must be http:// or https:// addresses separated by ';', such as http://[::]:8080 (got 'notaurl')")]
    [InlineData("http://127.0.0.1:99999", "option '--urls' must have ports from 0 to 65535 (got 'http://127.0.0.1:99999')")]
    [InlineData("http://127.0.0.1:0;http://[::1]:-1", "option '--urls' must have ports from 0 to 65535 (got 'http://[::1]:-1')")]
    [InlineData("ftp://127.0.0.1:21", "option '--urls' must be http:// or https:// addresses (got 'ftp://127.0.0.1:21')")]
    [InlineData(";", "option '--urls' needs at least one address")]
    public async Task Lab_serve_checks_its_urls_before_it_starts_naming_the_address(string urls, string message)
    {
        // The sockets transport: a check that let the address through would start plain Kestrel, which changes nothing on the host.
        foreach (string[] args in new[] { new[] { "lab", "serve", "--Transport", "sockets", "--urls", urls }, ["lab", "serve", "--Transport", "sockets", $"--urls={urls}"] })
        {
            (int code, string stdout, string stderr) = await Tool.RunAsync(args);
            Assert.Equal(2, code);
            Assert.Equal("", stdout);
            Assert.StartsWith($"mptcp-anycast lab serve: {message}", stderr);
        }
    }

    [Fact]
    public async Task Choices_complete_in_the_shell_through_the_suggest_directive()
    {
        (int code, string stdout, _) = await Tool.RunAsync("[suggest:17]", "lab up --unicast ");
        Assert.Equal(0, code);
        Assert.Equal(["ipv6-only", "own", "shared-ipv4"], stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }

    [Fact]
    public async Task Check_json_matches_the_exit_code_and_this_hosts_sysctl()
    {
        (int code, string stdout, _) = await Tool.RunAsync("check", "--role", "server", "--json");
        using JsonDocument doc = JsonDocument.Parse(stdout);
        bool ready = doc.RootElement.GetProperty("ready").GetBoolean();
        Assert.Equal(ready ? 0 : 1, code);
        int allowJoin = int.Parse(File.ReadAllText("/proc/sys/net/mptcp/allow_join_initial_addr_port").Trim());
        Assert.Equal(allowJoin, doc.RootElement.GetProperty("host").GetProperty("allowJoinInitialAddrPort").GetInt32());
        JsonElement cflag = doc.RootElement.GetProperty("findings").EnumerateArray().Single(f => f.GetProperty("name").GetString() == "c_flag");
        Assert.Equal(allowJoin == 0 ? "ok" : "warning", cflag.GetProperty("severity").GetString());
    }

    [Fact]
    public void Check_json_lists_endpoints_as_the_objects_endpoints_list_prints()
    {
        var endpoint = new MptcpEndpoint(3, System.Net.IPAddress.Parse("198.51.100.2"), 8443, MptcpEndpointFlags.Signal | MptcpEndpointFlags.Backup, 0);
        var state = new MptcpHostState
        {
            Support = MptcpSocket.CheckSupport(),
            Enabled = 1,
            PathManagerSetting = "kernel",
            AllowJoinInitialAddrPort = 0,
            AddAddrTimeout = 120,
            KernelRelease = "6.18.0",
            HasNetAdmin = true,
        };
        var snapshot = new PathManagerSnapshot(new MptcpLimits(2, 1), [endpoint], null);

        using JsonDocument check = JsonDocument.Parse(CheckCommand.FormatJson(HostRole.Server, state, HostCheck.Evaluate(state, HostRole.Server, snapshot), true, snapshot));
        using JsonDocument list = JsonDocument.Parse(ToolJson.Serialize<IReadOnlyList<EndpointJson>>([EndpointJson.Of(endpoint)]));

        JsonElement host = check.RootElement.GetProperty("host");
        JsonElement listed = Assert.Single(list.RootElement.EnumerateArray().ToArray());
        JsonElement inCheck = Assert.Single(host.GetProperty("endpoints").EnumerateArray().ToArray());
        Assert.Equal(JsonValueKind.Object, inCheck.ValueKind);
        Assert.Equal(listed.GetRawText(), inCheck.GetRawText());
        Assert.Equal(["id", "address", "port", "flags", "ifindex", "dev"], inCheck.EnumerateObject().Select(p => p.Name));
        Assert.Equal(["signal", "backup"], inCheck.GetProperty("flags").EnumerateArray().Select(f => f.GetString()));
        Assert.Equal(1, host.GetProperty("limits").GetProperty("addAddrAccepted").GetInt32());
        Assert.Equal(2, host.GetProperty("limits").GetProperty("subflows").GetInt32());
    }

    [Fact]
    public void Json_names_are_camel_case_and_text_is_not_escaped()
    {
        var finding = new HostFinding("c_flag", FindingSeverity.Problem, "allow_join_initial_addr_port=1", "clients can't join", "sysctl -w a=0 && echo '<ok>'");
        var state = new MptcpHostState { Support = MptcpSocket.CheckSupport(), KernelRelease = "6.18.0", HasNetAdmin = false };
        string json = CheckCommand.FormatJson(HostRole.Client, state, [finding], false);

        Assert.Contains("\"fix\":\"sysctl -w a=0 && echo '<ok>'\"", json);
        Assert.Contains("\"why\":\"clients can't join\"", json);
        using JsonDocument doc = JsonDocument.Parse(json);
        foreach (JsonProperty property in doc.RootElement.GetProperty("host").EnumerateObject())
        {
            Assert.Matches("^[a-z][A-Za-z0-9]*$", property.Name);
        }

        Assert.Equal(JsonValueKind.Null, doc.RootElement.GetProperty("host").GetProperty("endpoints").ValueKind);
    }

    [Theory]
    [InlineData("--version")]
    [InlineData("--help")]
    [InlineData("check")]
    [InlineData("check", "--json")]
    public async Task A_stdout_that_cannot_be_written_is_one_line_on_stderr_and_exit_1(params string[] args)
    {
        var stderr = new StringWriter();
        int code = await Program.RunAsync(args, new FullWriter(), stderr, Tool.NotRootLab).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(1, code);
        Assert.Equal("mptcp-anycast: cannot write to stdout: No space left on device" + Environment.NewLine, stderr.ToString());
    }

    [Fact]
    public async Task A_stderr_that_cannot_be_written_is_exit_1_without_an_exception()
    {
        int code = await Program.RunAsync(["bogus"], new StringWriter(), new FullWriter(), Tool.NotRootLab).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(1, code);
    }

    /// <summary>Whether a help line is the row of <paramref name="option"/>: its first column names it (<c>-?, -h, --help</c>, <c>--rate &lt;bytes/s&gt;</c>).</summary>
    private static bool IsRowOf(string line, string option)
    {
        string row = line.Trim();
        int gap = row.IndexOf("  ", StringComparison.Ordinal);
        return gap > 0 && row[..gap].Split(", ").Select(w => w.Split(' ')[0]).Contains(option);
    }

    private static string Normalize(string text) => string.Join(' ', text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));

    /// <summary>A stdout redirected to /dev/full: every write fails as the console's stream then fails.</summary>
    private sealed class FullWriter : TextWriter
    {
        public override System.Text.Encoding Encoding => System.Text.Encoding.UTF8;

        public override void Write(char value) => throw new IOException("No space left on device");
    }
}
