using System.CommandLine;
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
    public static Command Create()
    {
        var command = new Command("rescue",
            "Run the rescue agent, or show what the running agents report. The agent makes plain TCP connections survive " +
            "anycast route changes by tunnelling them to the POP that owns them; run it here for servers that are not ASP.NET Core apps.")
        {
            CreateRun(),
            CreateStatus(),
        };
        return command;
    }

    private static Command CreateRun()
    {
        Option<string?> config = ToolOptions.Text("--config", "file",
            "The agent's settings: a JSON file with the rescue options, or an appsettings.json with them under MptcpAnycast:Rescue.");
        config.Required = true;
        Option<bool> verbose = ToolOptions.Flag("--verbose", "Also print every flow rescued or reset, not only start, stop and problems.");
        Option<string?> log = ToolOptions.Text("--log", "file", "Append the agent's lines to this file instead of printing them.", "print them");
        var run = new Command("run", "Run the rescue agent on this host until Ctrl-C or SIGTERM (root, or CAP_BPF, CAP_NET_ADMIN and CAP_NET_RAW).")
        {
            config,
            verbose,
            log,
        };
        run.SetAction((parse, _) => RunAgentAsync(parse.GetValue(config)!, parse.GetValue(verbose), parse.GetValue(log),
            parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error));
        return run;
    }

    private static Command CreateStatus()
    {
        Option<string?> name = ToolOptions.Text("--name", "name", "Only the agent with this name (its settings' Name).", "every agent");
        Option<bool> json = ToolOptions.Flag("--json", "Print what the agents wrote, as JSON: one object, or an array for several agents.");
        Option<string> dir = new("--dir")
        {
            Description = "Where the agents write their status files.",
            HelpName = "directory",
            DefaultValueFactory = _ => RescueOptions.DefaultStatusDirectory,
        };
        var status = new Command("status", "Show what the rescue agents running on this host report: addresses, peers, owner map, counters. Exit 1 when none runs.")
        {
            name,
            json,
            dir,
        };
        status.SetAction(parse => Status(parse.GetValue(dir)!, parse.GetValue(name), parse.GetValue(json),
            parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error));
        return status;
    }

    private static async Task<int> RunAgentAsync(string path, bool verbose, string? logPath, TextWriter output, TextWriter error)
    {
        using var log = new AgentLog(logPath, output, error);
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
                agent = RescueAgent.Start(options, report => Print(log, report, verbose), prefix);
            }
            catch (RescueConfigurationException e)
            {
                log.WriteProblem($"mptcp-anycast rescue run: {path}: {e.Message}");

                throw new UsageException($"{path}: {e.Message}");
            }
            catch (RescueDataplaneException e)
            {
                log.WriteProblem($"mptcp-anycast rescue run: {e.Message}");

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

    /// <summary>The most a configuration file may hold: a real one is a few KiB, and /dev/zero never ends.</summary>
    internal const int MaxConfigBytes = 1 << 20;

    private static MemoryStream ReadBounded(string path)
    {
        using FileStream file = ToolFiles.OpenRead("--config", path);
        MemoryStream content;
        try
        {
            content = ToolFiles.ReadAtMost(file, MaxConfigBytes);
        }
        catch (IOException e)
        {
            throw new UsageException($"option '--config': cannot read '{path}': {e.Message}");
        }

        if (content.Length > MaxConfigBytes)
        {
            throw new UsageException($"--config {path}: more than {MaxConfigBytes / 1024 / 1024} MiB; a rescue configuration is a few KiB");
        }

        return content;
    }

    /// <summary>
    /// Reads <see cref="RescueOptions"/> from a JSON file: either the options object itself or an appsettings-style file
    /// with them under <c>MptcpAnycast:Rescue</c>. <paramref name="prefix"/> is what error messages call the settings.
    /// </summary>
    internal static RescueOptions Load(string path, out string prefix)
    {
        IConfigurationRoot configuration;
        using (MemoryStream file = ReadBounded(path))
        {
            try
            {
                // From the stream, not AddJsonFile: the file provider takes a file whose name starts with a dot
                // (.rescue.json) for a missing one.
                configuration = new ConfigurationBuilder().AddJsonStream(file).Build();
            }
            catch (JsonException) when (file.Length == 0)
            {
                throw new UsageException($"--config {path}: {ToolFiles.EmptyFile(path)}");
            }
            catch (JsonException e)
            {
                throw new UsageException($"--config {path}: not JSON: {JsonProblem(e)}");
            }
            catch (FormatException e)
            {
                // JSON that is not one object, or a key given twice.
                throw new UsageException($"--config {path}: {e.Message}");
            }
            catch (IOException e)
            {
                throw new UsageException($"option '--config': cannot read '{path}': {e.Message}");
            }
        }

        IConfigurationSection nested = configuration.GetSection(RescueOptions.SectionName);
        IConfiguration source = nested.Exists() ? nested : configuration;
        prefix = nested.Exists() ? RescueOptions.SectionName : "rescue";
        // The transport's check, so that a bad value reads the same in a file as in an app's configuration.
        if (RescueSettingsText.Check(source, prefix) is string problem)
        {
            throw new UsageException($"--config {path}: {problem}");
        }

        var options = new RescueOptions();
        try
        {
            source.Bind(options);
        }
        catch (InvalidOperationException e)
        {
            // A conversion the check does not foresee; the binder's message names the key and the value.
            throw new UsageException($"--config {path}: {e.Message}");
        }

        return options;
    }

    /// <summary>The parser's reason and where, counted from 1 as an editor counts: <c>... (line 4, byte 2)</c>.</summary>
    internal static string JsonProblem(JsonException e)
    {
        string reason = e.Message;
        int details = reason.IndexOf(" Path: ", StringComparison.Ordinal);
        details = details >= 0 ? details : reason.IndexOf(" LineNumber: ", StringComparison.Ordinal);
        reason = details >= 0 ? reason[..details] : reason;
        return e.LineNumber is long line ? $"{reason} (line {line + 1}, byte {e.BytePositionInLine + 1})" : reason;
    }

    private static int Status(string directory, string? name, bool json, TextWriter output, TextWriter error)
    {
        if (directory.Length == 0)
        {
            throw new UsageException("option '--dir' must name a directory (got '')");
        }

        if (File.Exists(directory))
        {
            throw new UsageException($"option '--dir': '{directory}' is a file, not a directory");
        }

        string[] files;
        try
        {
            files = Directory.Exists(directory)
                ? [.. Directory.GetFiles(directory, "*.json").Where(f => name is null || Path.GetFileNameWithoutExtension(f) == name).Order(StringComparer.Ordinal)]
                : [];
        }
        catch (UnauthorizedAccessException)
        {
            throw new CommandFailedException($"cannot read the directory {directory}: permission denied");
        }
        catch (IOException e)
        {
            throw new CommandFailedException($"cannot read the directory {directory}: {e.Message}");
        }

        if (files.Length == 0)
        {
            throw new CommandFailedException(name is null
                ? $"no rescue agent runs on this host (no status in {directory})"
                : $"no rescue agent named '{name}' runs on this host (no {RescueAgent.StatusPath(directory, name)})");
        }

        // A damaged file is reported by name and the others are still shown: one agent's file says nothing of another's.
        var agents = new List<RescueStatusFile>();
        foreach (string file in files)
        {
            try
            {
                agents.Add(RescueStatusFile.Read(file));
            }
            catch (InvalidDataException e)
            {
                error.WriteLine($"mptcp-anycast rescue status: {RescueStatusFile.Printable(file)}: {e.Message}");
            }
        }

        if (agents.Count == 0)
        {
            throw new CommandFailedException(files.Length == 1 ? $"no status could be read from {files[0]}" : $"none of the {files.Length} status files in {directory} could be read");
        }

        if (json)
        {
            output.WriteLine(agents.Count == 1 ? agents[0].Json : $"[{string.Join(",", agents.Select(a => a.Json))}]");
            return 0;
        }

        foreach (RescueStatusFile agent in agents)
        {
            double age = (DateTimeOffset.UtcNow - agent.WrittenAt).TotalSeconds;
            output.WriteLine($"rescue agent {agent.Name} on {agent.Interface}{(agent.Attachment is null ? "" : $" ({agent.Attachment})")}" +
                (age > 5 ? $"  (status is {age:F0} s old: the agent is probably not running)" : ""));
            output.WriteLine($"  anycast  {string.Join(", ", agent.Anycast)}");
            output.WriteLine($"  unicast  {string.Join(", ", agent.Unicast)}");
            output.WriteLine($"  peers    {string.Join(", ", agent.Peers)}");
            output.WriteLine($"  owner map {agent.Owners.Count} shown of capacity {agent.OwnerCapacity}; lookups pending {agent.PendingLookups}");
            foreach (string owner in agent.Owners)
            {
                output.WriteLine($"    {owner}");
            }

            output.WriteLine("  counters");
            foreach ((string counter, long value) in agent.Counters)
            {
                output.WriteLine($"    {counter,-36} {value,12}");
            }
        }

        return 0;
    }

    private static void Print(AgentLog log, RescueEvent report, bool verbose)
    {
        if (!verbose && report.Kind is RescueEventKind.FlowRescued or RescueEventKind.FlowReset)
        {
            return;
        }

        log.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {report.Kind}: {report.Message}{(report.Exception is null ? "" : $": {report.Exception.Message}")}");
    }
}
