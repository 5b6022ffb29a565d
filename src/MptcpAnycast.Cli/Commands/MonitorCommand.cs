using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using MptcpAnycast.Cli.CommandLine;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Cli.Commands;

/// <summary>
/// <c>mptcp-anycast monitor [--json] [--count N] [--timeout S]</c>: every path-manager event of this namespace, one line
/// each with all its attributes, until Ctrl-C, N events, or S seconds.
/// </summary>
internal static class MonitorCommand
{
    private static readonly HashSet<string> TextAttributes = ["token", "family", "saddr", "daddr", "flags", "reset_flags"];

    public static Command Create()
    {
        Option<bool> json = ToolOptions.Flag("--json", "Print each event as one JSON object on its own line (camelCase attribute names).");
        Option<int?> count = ToolOptions.OptionalInt("--count", "events", "Stop after this many events.", 1, int.MaxValue, "no limit");
        Option<int?> timeout = ToolOptions.OptionalInt("--timeout", "seconds", "Stop after this many seconds.", 1, 7 * 24 * 3600, "none, until Ctrl-C");
        var command = new Command("monitor",
            "Print every MPTCP path-manager event of this network namespace, as ip mptcp monitor. One line per event with all its attributes, until Ctrl-C, --count or --timeout.")
        {
            json,
            count,
            timeout,
        };
        command.SetAction((parse, _) => RunAsync(parse.GetValue(json), parse.GetValue(count), parse.GetValue(timeout), parse.InvocationConfiguration.Output));
        return command;
    }

    private static async Task<int> RunAsync(bool json, int? count, int? seconds, TextWriter output)
    {
        using var stop = new CancellationTokenSource();
        if (seconds is int s)
        {
            stop.CancelAfter(TimeSpan.FromSeconds(s));
        }

        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true;
            stop.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        try
        {
            await using PathManagerClient pm = await PathManagerArguments.OpenAsync().ConfigureAwait(false);
            await using PathManagerEventSubscription events = pm.SubscribeEvents();
            int seen = 0;
            try
            {
                await foreach (PathManagerEvent e in events.ReadAllAsync(stop.Token).ConfigureAwait(false))
                {
                    output.WriteLine(json ? Json(e) : e.ToString());
                    output.Flush();
                    if (++seen == count)
                    {
                        break;
                    }
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                // Ctrl-C or --timeout: a normal end.
            }

            return 0;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    /// <summary>One JSON object per event: the type, then every attribute present (numbers as numbers), names in camelCase.</summary>
    internal static string Json(PathManagerEvent e)
    {
        var json = new JsonObject { ["type"] = e.TypeName };
        foreach ((string name, string value) in e.GetAttributes())
        {
            json[ToolJson.NameOf(name)] = !TextAttributes.Contains(name) && long.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out long number)
                ? JsonValue.Create(number)
                : JsonValue.Create(value);
        }

        return ToolJson.Serialize(json);
    }
}
