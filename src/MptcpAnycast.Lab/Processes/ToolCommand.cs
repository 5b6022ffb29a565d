using System.Reflection;

namespace MptcpAnycast.Lab;

/// <summary>
/// How to start the <c>mptcp-anycast</c> tool again, for the POP servers the lab runs in its namespaces
/// (<c>ip netns exec NS TOOL lab serve ...</c>): the tool's own executable, or <c>dotnet mptcp-anycast.dll</c>.
/// </summary>
/// <param name="Words">The program and the arguments that come before the tool's own arguments.</param>
public sealed record ToolCommand(IReadOnlyList<string> Words)
{
    /// <summary>
    /// This process's own command line: <see cref="Environment.ProcessPath"/> when it is the tool's executable (the
    /// installed tool), or <c>dotnet ENTRY.dll</c> when it was started as <c>dotnet mptcp-anycast.dll</c>.
    /// </summary>
    public static ToolCommand OfThisProcess()
    {
        string process = Environment.ProcessPath ?? throw new InvalidOperationException("this process does not know its own executable");
        if (Path.GetFileNameWithoutExtension(process) != "dotnet")
        {
            return new ToolCommand([process]);
        }

        string entry = Assembly.GetEntryAssembly()?.Location is { Length: > 0 } location
            ? location
            : throw new InvalidOperationException("started by 'dotnet' without an entry assembly on disk: cannot start the tool again");
        return new ToolCommand([process, entry]);
    }

    /// <summary><c>dotnet ASSEMBLY</c>: a built <c>mptcp-anycast.dll</c> (tests and benchmarks).</summary>
    public static ToolCommand Dotnet(string assemblyPath) =>
        File.Exists(assemblyPath)
            ? new ToolCommand(["dotnet", assemblyPath])
            : throw new FileNotFoundException($"the tool is not at {assemblyPath}; build it first (dotnet build MptcpAnycast.sln)", assemblyPath);

    /// <summary>The whole command line: these words, then <paramref name="arguments"/>.</summary>
    public string[] With(IEnumerable<string> arguments) => [.. Words, .. arguments];

    public override string ToString() => string.Join(' ', Words);
}
