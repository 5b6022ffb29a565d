using System.Diagnostics;
using System.Reflection;
using System.Text;

namespace MptcpAnycast.Lab.Tests.Packaging;

/// <summary>
/// The repository's packages as a user gets them: <c>dotnet pack MptcpAnycast.sln</c> into a folder of its own (the
/// build the tests run on, so nothing is compiled again), and the tool installed from there into a tool path of its
/// own. Everything lives under one temporary folder, NuGet's package and HTTP caches included, and goes when the
/// tests are done; the machine's own caches and global tools are never touched.
/// </summary>
public sealed class PackageFeed : IAsyncLifetime
{
    /// <summary>The one version every package carries: the libraries' own (Directory.Build.props), without the commit.</summary>
    public static string Version { get; } = ExpectedVersion();

    /// <summary>Package ids, as users type them.</summary>
    public static readonly string[] PackageIds = ["MptcpAnycast", "MptcpAnycast.Kestrel", "mptcp-anycast"];

    public static readonly TimeSpan PackTimeout = TimeSpan.FromMinutes(5);
    public static readonly TimeSpan InstallTimeout = TimeSpan.FromMinutes(3);

    private readonly string _root = Directory.CreateTempSubdirectory("mptcp-anycast-packaging-").FullName;

    /// <summary>What <c>dotnet pack</c> printed.</summary>
    public string PackOutput { get; private set; } = "";

    /// <summary>Where <c>dotnet pack -o</c> wrote the packages.</summary>
    public string FeedDirectory => Path.Combine(_root, "feed");

    /// <summary>The <c>--tool-path</c> the tool was installed into.</summary>
    public string ToolPath => Path.Combine(_root, "tool");

    /// <summary>The installed tool's command.</summary>
    public string Tool => Path.Combine(ToolPath, "mptcp-anycast");

    /// <summary>A new empty folder under the temporary root (no checkout above it).</summary>
    public string NewFolder(string name) => Directory.CreateDirectory(Path.Combine(_root, name)).FullName;

    public Task InitializeAsync()
    {
        // No MSBuild files above the temporary folders: nothing of this machine's /tmp leaks into the consumer app.
        foreach (string file in (string[])["Directory.Build.props", "Directory.Build.targets", "Directory.Packages.props"])
        {
            File.WriteAllText(Path.Combine(_root, file), "<Project />\n");
        }

        string configuration = typeof(PackageFeed).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Debug";
        // Packed from the build the tests run on (no build, no restore: the checkout's obj/ keeps its own package folder).
        Result pack = Run("dotnet", ["pack", SolutionPath(), "-c", configuration, "--no-build", "--no-restore", "-o", FeedDirectory, "-nodeReuse:false"],
            RepositoryRoot(), PackTimeout, isolated: false);
        if (pack.ExitCode != 0)
        {
            throw new InvalidOperationException($"dotnet pack failed ({pack.ExitCode}):{Environment.NewLine}{pack.Output}");
        }

        PackOutput = pack.Output;

        Result install = Run("dotnet", ["tool", "install", "--tool-path", ToolPath, "--add-source", FeedDirectory, "mptcp-anycast", "--version", Version],
            _root, InstallTimeout);
        if (install.ExitCode != 0)
        {
            throw new InvalidOperationException($"dotnet tool install failed ({install.ExitCode}):{Environment.NewLine}{install.Output}");
        }

        return Task.CompletedTask;
    }

    public Task DisposeAsync()
    {
        Directory.Delete(_root, recursive: true);
        return Task.CompletedTask;
    }

    /// <summary>
    /// Runs a command to completion within <paramref name="timeout"/> (then kills it and its children and fails).
    /// Isolated: NuGet's caches under the temporary folder, no build servers left behind, none of the test host's
    /// MSBuild or test-platform variables.
    /// </summary>
    public Result Run(string file, IEnumerable<string> arguments, string workingDirectory, TimeSpan timeout, bool isolated = true)
    {
        var psi = new ProcessStartInfo(file)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string argument in arguments)
        {
            psi.ArgumentList.Add(argument);
        }

        foreach (string name in psi.Environment.Keys.ToArray())
        {
            if (name.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase) || name.StartsWith("VSTEST", StringComparison.OrdinalIgnoreCase))
            {
                psi.Environment.Remove(name);
            }
        }

        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        psi.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";
        psi.Environment["DOTNET_CLI_USE_MSBUILD_SERVER"] = "0";
        psi.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        psi.Environment["UseSharedCompilation"] = "false";
        if (isolated)
        {
            psi.Environment["NUGET_PACKAGES"] = Path.Combine(_root, "nuget-packages");
            psi.Environment["NUGET_HTTP_CACHE_PATH"] = Path.Combine(_root, "nuget-http-cache");
        }

        using Process process = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file}");
        var output = new StringBuilder();
        var standardOutput = new StringBuilder();
        process.OutputDataReceived += (_, e) =>
        {
            Append(output, e.Data);
            Append(standardOutput, e.Data);
        };
        process.ErrorDataReceived += (_, e) => Append(output, e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            throw new TimeoutException($"'{file} {string.Join(' ', psi.ArgumentList)}' did not finish in {timeout.TotalSeconds:0} s:{Environment.NewLine}{Text(output)}");
        }

        process.WaitForExit(); // the output's end
        return new Result(process.ExitCode, Text(output), Text(standardOutput));
    }

    /// <summary>A command's exit code, its standard output and error interleaved as they came, and its standard output alone.</summary>
    public readonly record struct Result(int ExitCode, string Output, string StandardOutput);

    public static string RepositoryRoot()
    {
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "MptcpAnycast.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"no MptcpAnycast.sln above {AppContext.BaseDirectory}: the packaging tests run from the checkout's build");
    }

    private static string SolutionPath() => Path.Combine(RepositoryRoot(), "MptcpAnycast.sln");

    private static string ExpectedVersion()
    {
        string informational = typeof(MptcpSocket).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
            ?? throw new InvalidOperationException("MptcpAnycast.dll has no informational version");
        int commit = informational.IndexOf('+', StringComparison.Ordinal);
        return commit < 0 ? informational : informational[..commit];
    }

    private static void Append(StringBuilder output, string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (output)
        {
            output.AppendLine(line);
        }
    }

    private static string Text(StringBuilder output)
    {
        lock (output)
        {
            return output.ToString();
        }
    }
}
