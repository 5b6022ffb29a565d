using MptcpAnycast.Cli;
using MptcpAnycast.Cli.Commands;
using MptcpAnycast.Cli.Lab;
using MptcpAnycast.Lab.Tests.Infrastructure;

namespace MptcpAnycast.Lab.Tests.Lab;

[Collection(AnycastLabCollection.Name)]
public sealed class LabCommandTests
{
    [LabFact]
    public async Task Lab_up_flip_status_down_work_across_invocations()
    {
        string prefix = TestLab.NewPrefix();
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

    [Fact]
    public async Task Lab_refuses_without_root_with_exit_1_and_says_why()
    {
        Func<bool> original = LabCommand.IsRoot;
        LabCommand.IsRoot = () => false;
        try
        {
            (int code, string text) = await RunAsync("lab", "up", "--prefix", "never");
            Assert.Equal(1, code);
            Assert.Contains("needs root", text);
            Assert.Empty(LabTopology.ExistingNamespaces("never"));
        }
        finally
        {
            LabCommand.IsRoot = original;
        }
    }

    [Theory]
    [InlineData("lab")]
    [InlineData("lab", "sideways")]
    [InlineData("lab", "up", "--unicast", "carrier-pigeon")]
    [InlineData("lab", "up", "--client")]
    [InlineData("lab", "up", "--prefix", "bad-prefix")]
    [InlineData("lab", "flip", "--nat")]
    [InlineData("lab", "down", "extra")]
    public async Task Wrong_lab_command_lines_exit_2(params string[] args)
    {
        (int code, string text) = await RunAsync(args);
        Assert.True(code == 2, text);
        Assert.Contains("usage: mptcp-anycast lab", text);
    }

    [Theory]
    [InlineData(LabUnicast.SharedIpv4, "shared-ipv4")]
    [InlineData(LabUnicast.Ipv6Only, "ipv6-only")]
    [InlineData(LabClientLimits.AcceptAddAddr, "accept-add-addr")]
    [InlineData(LabPathManager.Userspace, "userspace")]
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
        }
    }

    private static async Task<(int Code, string Text)> RunAsync(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = await Program.RunAsync(args, stdout, stderr).WaitAsync(TimeSpan.FromSeconds(60));
        return (code, stdout.ToString() + stderr.ToString());
    }
}
