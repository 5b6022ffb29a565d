using MptcpAnycast.Lab;
using MptcpAnycast.Lab.Tests.Infrastructure;
using Xunit.Abstractions;

namespace MptcpAnycast.Lab.Tests.Rescue;

/// <summary>
/// Files the rescue commands cannot open for want of permission, tried as an ordinary user (root's permissions are
/// not checked, so the unit tests cannot try these): each is named with why, with the usage exit code, and no stack
/// trace. The tool runs as <c>nobody</c> through <c>setpriv</c>, in this host's namespace (it opens no socket).
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class RescueCommandLinePermissionTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _directory = Reachable(Directory.CreateTempSubdirectory("rescue-perm").FullName);

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [LabFact]
    public void A_configuration_file_the_user_cannot_read_exits_2_naming_it()
    {
        string config = WriteFile(".rescue.json", """{ "Name": "pop-a" }""", UnixFileMode.UserRead | UnixFileMode.UserWrite);

        CommandResult result = AsNobody("rescue", "run", "--config", config);

        Assert.Equal(2, result.ExitCode);
        Assert.Contains($"option '--config': cannot open '{config}': permission denied", result.Output);
        Assert.DoesNotContain("   at ", result.Output);
    }

    [LabFact]
    public void A_log_the_user_cannot_create_exits_2_naming_it_before_the_settings_are_read()
    {
        string config = WriteFile("rescue.json", """{ "Name": "pop-a" }""", UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        string log = Path.Combine(_directory, "rescue.log"); // the directory is root's, 0755

        CommandResult result = AsNobody("rescue", "run", "--config", config, "--log", log);

        Assert.Equal(2, result.ExitCode);
        Assert.Contains($"option '--log': cannot open '{log}': permission denied", result.Output);
        Assert.DoesNotContain("Interface", result.Output); // the settings (which lack it) were not read yet
        Assert.False(File.Exists(log));
    }

    [LabFact]
    public void Status_names_a_status_file_the_user_cannot_read_and_shows_the_others()
    {
        string status = Directory.CreateDirectory(Path.Combine(_directory, "status")).FullName;
        string now = DateTimeOffset.UtcNow.ToString("O", System.Globalization.CultureInfo.InvariantCulture);
        WriteFile(Path.Combine("status", "pop-a.json"), $$"""
            { "name": "pop-a", "interface": "eth0", "startedAt": "{{now}}", "writtenAt": "{{now}}",
              "anycast": [ "192.0.2.100" ], "unicast": [ "198.51.100.2" ], "peers": [ ], "ownerCapacity": 65536,
              "pendingLookups": 0, "owners": [ ], "counters": { "program.tunnelled": 7 } }
            """, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        string closed = WriteFile(Path.Combine("status", "pop-b.json"), """{ "name": "pop-b" }""", UnixFileMode.UserRead | UnixFileMode.UserWrite);

        CommandResult result = AsNobody("rescue", "status", "--dir", status);

        Assert.Equal(0, result.ExitCode);
        Assert.Contains("rescue agent pop-a on eth0", result.Output);
        Assert.Contains($"mptcp-anycast rescue status: {closed}: cannot read: permission denied", result.Output);
        Assert.DoesNotContain("   at ", result.Output);
    }

    [LabFact]
    public void Status_of_a_directory_the_user_cannot_read_exits_1_saying_so()
    {
        string closed = Directory.CreateDirectory(Path.Combine(_directory, "closed")).FullName;
        File.SetUnixFileMode(closed, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);

        CommandResult result = AsNobody("rescue", "status", "--dir", closed);

        Assert.Equal(1, result.ExitCode);
        Assert.Contains($"cannot read the directory {closed}: permission denied", result.Output);
        Assert.DoesNotContain("   at ", result.Output);
    }

    /// <summary>Made 0755: a temporary directory is its owner's alone, and nobody must reach the files in it.</summary>
    private static string Reachable(string directory)
    {
        File.SetUnixFileMode(directory, (UnixFileMode)0b111_101_101);
        return directory;
    }

    private string WriteFile(string name, string text, UnixFileMode mode)
    {
        string path = Path.Combine(_directory, name);
        File.WriteAllText(path, text);
        File.SetUnixFileMode(path, mode);
        return path;
    }

    private CommandResult AsNobody(params string[] arguments)
    {
        CommandResult result = CommandRunner.TryRun("setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups", "env", "HOME=/tmp", "dotnet", LabTool.AssemblyPath, .. arguments],
            timeout: TimeSpan.FromSeconds(60));
        output.WriteLine($"exit {result.ExitCode}: {result.Output}");
        return result;
    }
}
