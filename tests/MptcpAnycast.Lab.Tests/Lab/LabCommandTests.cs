using MptcpAnycast.Cli;
using MptcpAnycast.Cli.Commands;
using MptcpAnycast.Lab.Tests.Infrastructure;

namespace MptcpAnycast.Lab.Tests.Lab;

/// <summary>The <c>lab</c> command line: its verbs across invocations, the root refusal, wrong arguments, and the demo run as the tool runs it.</summary>
[Collection(AnycastLabCollection.Name)]
public sealed class LabCommandTests
{
    [LabFact]
    public async Task Lab_up_flip_status_down_work_across_invocations()
    {
        string prefix = LabPrefix.New();
        try
        {
            (int up, string upText) = await RunAsync("lab", "up", "--prefix", prefix, "--unicast", "shared-ipv4", "--client", "subflow-endpoint", "--nat");
            Assert.True(up == 0, upText);
            Assert.Contains("unicast shared-ipv4, client subflow-endpoint, pm kernel, nat", upText);

            (int flip, string flipText) = await RunAsync("lab", "flip", "--prefix", prefix);
            Assert.Equal(0, flip);
            Assert.Contains("from POP A to POP B", flipText);

            (int status, string statusText) = await RunAsync("lab", "status", "--prefix", prefix);
            Assert.Equal(0, status);
            Assert.Contains("-> POP B", statusText);

            (int down, string downText) = await RunAsync("lab", "down", "--prefix", prefix);
            Assert.Equal(0, down);
            Assert.Contains($"{prefix}-router", downText);

            (int again, string againText) = await RunAsync("lab", "down", "--prefix", prefix);
            Assert.Equal(0, again);
            Assert.Contains("nothing left", againText);

            (int flipGone, string flipGoneText) = await RunAsync("lab", "flip", "--prefix", prefix);
            Assert.Equal(1, flipGone);
            Assert.Contains("no lab with prefix", flipGoneText);
        }
        finally
        {
            LabTopology.Down(prefix);
        }
    }

    [LabFact]
    public async Task Lab_up_pops_3_and_flip_to_any_pop_work_across_invocations()
    {
        string prefix = LabPrefix.New();
        try
        {
            (int up, string upText) = await RunAsync("lab", "up", "--prefix", prefix, "--pops", "3");
            Assert.True(up == 0, upText);
            Assert.Contains("pm kernel, pops 3", upText);
            Assert.Contains($"POP C   {prefix}-popc", upText);
            Assert.Contains("192.0.2.130/26, 2001:db8:cc::2/64", upText);

            (int toC, string toCText) = await RunAsync("lab", "flip", "--prefix", prefix, "--to", "C");
            Assert.True(toC == 0, toCText);
            Assert.Contains("from POP A to POP C", toCText);
            Assert.Contains("192.0.2.100 via 192.0.2.130", new LabNamespace($"{prefix}-router").Ip("route"));

            (int again, string againText) = await RunAsync("lab", "flip", "--prefix", prefix, "--to", "c");
            Assert.True(again == 0, againText);
            Assert.Contains("already points at POP C; nothing changed", againText);

            (int toB, string toBText) = await RunAsync("lab", "flip", "--prefix", prefix, "--to=b");
            Assert.True(toB == 0, toBText);
            Assert.Contains("from POP C to POP B", toBText);

            (int next, string nextText) = await RunAsync("lab", "flip", "--prefix", prefix);
            Assert.True(next == 0, nextText);
            Assert.Contains("from POP B to POP C", nextText);

            (int status, string statusText) = await RunAsync("lab", "status", "--prefix", prefix);
            Assert.Equal(0, status);
            Assert.Contains("-> POP C", statusText);
            Assert.Contains($"== {prefix}-popc", statusText);

            (int down, string downText) = await RunAsync("lab", "down", "--prefix", prefix);
            Assert.Equal(0, down);
            Assert.Contains($"{prefix}-popc", downText);
            Assert.Empty(Topology.Existing(prefix));
        }
        finally
        {
            LabTopology.Down(prefix);
        }
    }

    [LabFact]
    public async Task Lab_flip_to_a_pop_the_lab_does_not_have_exits_2_naming_it_and_moves_nothing()
    {
        using LabTopology lab = LabTool.Up(new LabOptions());

        (int code, string text) = await RunAsync("lab", "flip", "--prefix", lab.Options.Prefix, "--to", "C");

        Assert.True(code == 2, text);
        Assert.Contains("option '--to' must be one of a|b", text);
        Assert.Contains("(got 'C')", text);
        Assert.Contains("usage: mptcp-anycast lab", text);
        Assert.Equal(LabPopId.A, LabTopology.Load(lab.Options.Prefix)!.Active);
        Assert.Contains($"{lab.Plan.Anycast4} via {lab.Pop(LabPopId.A).Address4}", lab.Router.Ip("route"));
    }

    [Theory]
    [InlineData("up", "--prefix", "never")]
    [InlineData("demo", "--prefix", "never")]
    [InlineData("measure", "--prefix", "never")]
    public async Task Lab_refuses_without_root_with_exit_1_and_says_why(params string[] args)
    {
        var output = new StringWriter();
        var lab = new LabCommand(isRoot: () => false, tool: () => throw new InvalidOperationException("a refused lab starts no server"));

        int code = await lab.RunAsync(args, output).WithTimeout();

        Assert.Equal(1, code);
        Assert.Contains("needs root", output.ToString());
        Assert.Empty(Topology.Existing("never"));
    }

    // The main job as a user runs it: the built tool from a folder outside the checkout starts its own POP servers
    // (dotnet mptcp-anycast.dll lab serve), so it needs nothing else of the repository.
    [LabFact]
    public void Lab_demo_of_the_built_tool_run_outside_the_checkout_survives_the_flip()
    {
        string prefix = LabPrefix.New();
        try
        {
            CommandResult demo = CommandRunner.TryRun("dotnet", [LabTool.AssemblyPath, "lab", "demo", "--prefix", prefix, "--seconds", "4", "--no-curl"],
                timeout: TimeSpan.FromSeconds(120), workingDirectory: Path.GetTempPath());

            Assert.True(demo.ExitCode == 0, demo.Output);
            Assert.Matches(@"MPTCP \(\.NET\) .* SURVIVED", demo.Output);
            Assert.Matches(@"TCP \(\.NET\) .* SURVIVED \(rescued", demo.Output); // rescue is on by default
            Assert.Matches(@"POP B rescue: [1-9][0-9]* segment\(s\) tunnelled", demo.Output);
            Assert.Contains("Lab removed (4 namespaces)", demo.Output);
            Assert.Empty(Topology.Existing(prefix));
        }
        finally
        {
            LabTopology.Down(prefix);
        }
    }

    [Theory]
    [InlineData("demo", "lab")]
    [InlineData("sideways", "lab", "sideways")]
    [InlineData("carrier-pigeon", "lab", "up", "--unicast", "carrier-pigeon")]
    [InlineData("--client", "lab", "up", "--client")]
    [InlineData("bad-prefix", "lab", "up", "--prefix", "bad-prefix")]
    [InlineData("--nat", "lab", "flip", "--nat")]
    [InlineData("extra", "lab", "down", "extra")]
    [InlineData("--app", "lab", "demo", "--app", "HelloAnycast.dll")]
    [InlineData("carrier-pigeon", "lab", "serve", "--Transport", "carrier-pigeon")]
    [InlineData("--Frobnicate", "lab", "serve", "--Frobnicate", "1")]
    [InlineData("positional", "lab", "serve", "positional")]
    [InlineData("--urls", "lab", "serve", "--urls")]
    [InlineData("4", "lab", "up", "--pops", "4")]
    [InlineData("1", "lab", "up", "--pops", "1")]
    [InlineData("three", "lab", "up", "--pops", "three")]
    [InlineData("--pops", "lab", "up", "--pops")]
    [InlineData("--pops", "lab", "demo", "--pops", "3")]
    [InlineData("--pops", "lab", "measure", "--pops", "3")]
    [InlineData("--pops", "lab", "flip", "--pops", "3")]
    [InlineData("d", "lab", "flip", "--to", "d")]
    [InlineData("1", "lab", "flip", "--to", "1")]
    [InlineData("pop-a", "lab", "flip", "--to", "pop-a")]
    [InlineData("--to", "lab", "flip", "--to")]
    [InlineData("--to", "lab", "status", "--to", "a")]
    [InlineData("--to", "lab", "up", "--to", "a")]
    public async Task Wrong_lab_command_lines_exit_2_naming_what_is_wrong(string named, params string[] args)
    {
        (int code, string text) = await RunAsync(args);
        Assert.True(code == 2, text);
        Assert.Contains("usage: mptcp-anycast lab", text);
        Assert.Contains(named == "demo" ? "demo" : $"'{named}'", text);
    }

    [Theory]
    [InlineData(LabUnicast.SharedIpv4, "shared-ipv4")]
    [InlineData(LabUnicast.Ipv6Only, "ipv6-only")]
    [InlineData(LabClientLimits.AcceptAddAddr, "accept-add-addr")]
    [InlineData(LabPathManager.Userspace, "userspace")]
    [InlineData(LabPopId.C, "c")]
    public void Choices_are_spelled_in_kebab_case_and_parse_back(object value, string text)
    {
        switch (value)
        {
            case LabUnicast u:
                Assert.Equal(text, LabNames.Of(u));
                Assert.True(LabNames.TryParse(text, out LabUnicast parsedU) && parsedU == u);
                break;
            case LabClientLimits c:
                Assert.Equal(text, LabNames.Of(c));
                Assert.True(LabNames.TryParse(text, out LabClientLimits parsedC) && parsedC == c);
                break;
            case LabPathManager p:
                Assert.Equal(text, LabNames.Of(p));
                Assert.True(LabNames.TryParse(text, out LabPathManager parsedP) && parsedP == p);
                break;
            case LabPopId pop:
                Assert.Equal(text, LabNames.Of(pop));
                Assert.True(LabNames.TryParse(text.ToUpperInvariant(), out LabPopId parsedPop) && parsedPop == pop);
                break;
        }
    }

    private static async Task<(int Code, string Text)> RunAsync(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = await Program.RunAsync(args, stdout, stderr).WithTimeout(TimeSpan.FromSeconds(60));
        return (code, stdout.ToString() + stderr.ToString());
    }
}
