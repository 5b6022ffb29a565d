namespace MptcpAnycast.Tests.Cli;

/// <summary>Every command, fed wrong arguments: usage and exit code 2, never a stack trace, never a change to the host.</summary>
public sealed class WrongArgumentsSweepTests
{
    private static readonly string[][] Bad =
    [
        ["--bogus"],
        ["--json=1", "--json"],
        ["extra-positional", "more"],
        ["--count", "-5"],
        ["--count", "1e9"],
        ["--timeout", "abc"],
        ["--id", "0"],
        ["--id", "256"],
        ["--token", "xyz"],
        ["--token", "123456789"],
        ["--port", "70000"],
        ["--address", "999.1.1.1"],
        ["--subflows", "-1"],
        ["--add-addr-accepted", "nine"],
        ["--role", ""],
        ["--prefix", "has space"],
        ["--seconds", "0"],
        ["--after-join", "sometimes"],
        ["--flips", "100000"],
        ["\0"],
    ];

    public static TheoryData<string, int> Cases()
    {
        var data = new TheoryData<string, int>();
        foreach (string command in Tool.AllCommands().Where(c => c.Words.Length == 1).Select(c => c.Words[0]))
        {
            for (int i = 0; i < Bad.Length; i++)
            {
                data.Add(command, i);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Wrong_arguments_never_crash_and_bad_options_exit_2(string command, int bad)
    {
        // Give sub-command verbs where the command needs one, so that the options themselves are what is judged.
        string[] verb = command switch
        {
            "endpoints" => ["list"],
            "lab" => ["up"],
            "rescue" => ["status"],
            _ => [],
        };
        string[] args = [command, .. verb, .. Bad[bad]];
        (int code, string stdout, string stderr) = await Tool.RunAsync(args);

        string all = stdout + stderr;
        Assert.DoesNotContain("   at ", all);        // no stack trace
        Assert.DoesNotContain("Unhandled exception", all);
        Assert.True(code == 2, $"mptcp-anycast {string.Join(' ', args)} exited {code}:\n{all}");
        Assert.Contains("usage: mptcp-anycast", stderr);
        Assert.Equal("", stdout);
    }
}
