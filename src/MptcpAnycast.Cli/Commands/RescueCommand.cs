using System.Text.Json;
using Microsoft.Extensions.Configuration;
using MptcpAnycast.Cli.CommandLine;
using MptcpAnycast.Rescue;

namespace MptcpAnycast.Cli.Commands;

/// <summary>
/// <c>mptcp-anycast rescue run --config FILE [--verbose]</c>: runs the rescue agent on this host (for servers that are
/// not ASP.NET Core apps) until Ctrl-C or SIGTERM. <c>mptcp-anycast rescue status [--name N] [--json]</c>: what the
/// running agents of this host report.
/// </summary>
internal static class RescueCommand
{
    public const string Usage = "rescue run --config FILE [--verbose] [--log FILE] | rescue status [--name NAME] [--json] [--dir DIR]";

    private static readonly HashSet<string> Flags = ["--verbose", "--json"];
    private static readonly HashSet<string> Valued = ["--config", "--name", "--dir", "--log"];

    public static Task<int> RunAsync(string[] args, TextWriter output)
    {
        var reader = new ArgumentReader(args, Flags, Valued);
        string verb = reader.Positional.Count == 1 ? reader.Positional[0] : throw new UsageException("say 'run' or 'status'");
        return verb switch
        {
            "run" => RunAgentAsync(reader, output),
            "status" => Task.FromResult(Status(reader, output)),
            _ => throw new UsageException($"unknown rescue command '{verb}' (run, status)"),
        };
    }

    private static async Task<int> RunAgentAsync(ArgumentReader reader, TextWriter output)
    {
        reader.OnlyOptions("rescue run", "--config", "--verbose", "--log");
        string path = reader.Required("--config");
        bool verbose = reader.Flag("--verbose");
        using StreamWriter? log = reader.Value("--log") is string logPath ? new StreamWriter(logPath, append: true) { AutoFlush = true } : null;
        output = log ?? output;
        RescueOptions options = Load(path, out string prefix);

        using var stop = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true;
            stop.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(
            System.Runtime.InteropServices.PosixSignal.SIGTERM, context =>
            {
                context.Cancel = true;
                stop.Cancel();
            });
        try
        {
            RescueAgent agent;
            try
            {
                agent = RescueAgent.Start(options, report => Print(output, report, verbose), prefix);
            }
            catch (RescueConfigurationException e)
            {
                log?.WriteLine($"mptcp-anycast rescue run: {path}: {e.Message}");
                throw new UsageException($"{path}: {e.Message}");
            }
            catch (RescueDataplaneException e)
            {
                log?.WriteLine($"mptcp-anycast rescue run: {e.Message}");
                throw new CommandFailedException(e.Message);
            }

            using (agent)
            {
                try
                {
                    await Task.Delay(Timeout.Infinite, stop.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                }
            }

            return 0;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    /// <summary>
    /// Reads <see cref="RescueOptions"/> from a JSON file: either the options object itself or an appsettings-style file
    /// with them under <c>MptcpAnycast:Rescue</c>. <paramref name="prefix"/> is what error messages call the settings.
    /// </summary>
    internal static RescueOptions Load(string path, out string prefix)
    {
        IConfigurationRoot configuration;
        try
        {
            configuration = new ConfigurationBuilder().AddJsonFile(Path.GetFullPath(path), optional: false).Build();
        }
        catch (Exception e) when (e is FileNotFoundException or IOException or FormatException or InvalidDataException)
        {
            throw new UsageException($"--config {path}: {e.Message}");
        }

        IConfigurationSection nested = configuration.GetSection(RescueOptions.SectionName);
        IConfiguration source = nested.Exists() ? nested : configuration;
        prefix = nested.Exists() ? RescueOptions.SectionName : "rescue";
        var options = new RescueOptions();
        try
        {
            source.Bind(options);
        }
        catch (InvalidOperationException e)
        {
            throw new UsageException($"--config {path}: {e.InnerException?.Message ?? e.Message}");
        }

        return options;
    }

    private static int Status(ArgumentReader reader, TextWriter output)
    {
        reader.OnlyOptions("rescue status", "--name", "--json", "--dir");
        string directory = reader.Value("--dir") ?? RescueOptions.DefaultStatusDirectory;
        string? name = reader.Value("--name");
        bool json = reader.Flag("--json");
        string[] files = Directory.Exists(directory)
            ? [.. Directory.GetFiles(directory, "*.json").Where(f => name is null || Path.GetFileNameWithoutExtension(f) == name).Order(StringComparer.Ordinal)]
            : [];
        if (files.Length == 0)
        {
            throw new CommandFailedException(name is null
                ? $"no rescue agent runs on this host (no status in {directory})"
                : $"no rescue agent named '{name}' runs on this host (no {RescueAgent.StatusPath(directory, name)})");
        }

        if (json)
        {
            output.WriteLine(files.Length == 1 ? File.ReadAllText(files[0]) : $"[{string.Join(",", files.Select(File.ReadAllText))}]");
            return 0;
        }

        foreach (string file in files)
        {
            using JsonDocument document = JsonDocument.Parse(File.ReadAllText(file));
            JsonElement root = document.RootElement;
            DateTimeOffset written = root.GetProperty("writtenAt").GetDateTimeOffset();
            double age = (DateTimeOffset.UtcNow - written).TotalSeconds;
            output.WriteLine($"rescue agent {root.GetProperty("name").GetString()} on {root.GetProperty("interface").GetString()}" +
                (age > 5 ? $"  (status is {age:F0} s old: the agent is probably not running)" : ""));
            output.WriteLine($"  anycast  {string.Join(", ", root.GetProperty("anycast").EnumerateArray().Select(e => e.GetString()))}");
            output.WriteLine($"  unicast  {string.Join(", ", root.GetProperty("unicast").EnumerateArray().Select(e => e.GetString()))}");
            output.WriteLine($"  peers    {string.Join(", ", root.GetProperty("peers").EnumerateArray().Select(e => e.GetString()))}");
            output.WriteLine($"  owner map {root.GetProperty("owners").GetArrayLength()} shown of capacity {root.GetProperty("ownerCapacity").GetInt32()}; lookups pending {root.GetProperty("pendingLookups").GetInt32()}");
            foreach (JsonElement owner in root.GetProperty("owners").EnumerateArray())
            {
                output.WriteLine($"    {owner.GetString()}");
            }

            output.WriteLine("  counters");
            foreach (JsonProperty counter in root.GetProperty("counters").EnumerateObject())
            {
                output.WriteLine($"    {counter.Name,-36} {counter.Value.GetInt64(),12}");
            }
        }

        return 0;
    }

    private static void Print(TextWriter output, RescueEvent report, bool verbose)
    {
        if (!verbose && report.Kind is RescueEventKind.FlowRescued or RescueEventKind.FlowReset)
        {
            return;
        }

        lock (output)
        {
            output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {report.Kind}: {report.Message}{(report.Exception is null ? "" : $": {report.Exception.Message}")}");
            output.Flush();
        }
    }
}
