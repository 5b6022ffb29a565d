namespace MptcpAnycast.Lab.Tests.Infrastructure;

/// <summary>The built tool next to the tests, and labs with prefixes of their own (<see cref="LabPrefix"/>).</summary>
public static class LabTool
{
    /// <summary>Where the build put <c>mptcp-anycast.dll</c>: this folder (the test project references the tool).</summary>
    public static string AssemblyPath { get; } = Path.Combine(AppContext.BaseDirectory, "mptcp-anycast.dll");

    /// <summary><c>dotnet mptcp-anycast.dll</c>: how the tests start the tool, and with it the POP servers (<c>lab serve</c>).</summary>
    public static ToolCommand Command => ToolCommand.Dotnet(AssemblyPath);

    /// <summary>An anycast lab with a fresh prefix (<c>mplt&lt;pid&gt;x&lt;n&gt;</c>); labs of dead test runs are removed first.</summary>
    public static LabTopology Up(LabOptions options) => LabTopology.Up(options with { Prefix = LabPrefix.New() });
}
