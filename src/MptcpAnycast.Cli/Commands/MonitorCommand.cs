using System.Globalization;
using System.Text;
using System.Text.Json;
using MptcpAnycast.Cli.CommandLine;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Cli.Commands;

/// <summary>
/// <c>mptcp-anycast monitor [--json] [--count N] [--timeout S]</c>: every path-manager event of this namespace, one line
/// each with all its attributes, until Ctrl-C, N events, or S seconds.
/// </summary>
internal static class MonitorCommand
{
    private static readonly HashSet<string> Flags = ["--json"];
    private static readonly HashSet<string> Valued = ["--count", "--timeout"];
    private static readonly HashSet<string> TextAttributes = ["token", "family", "saddr", "daddr", "flags", "reset_flags"];

    public static async Task<int> RunAsync(string[] args, TextWriter output)
    {
        var reader = new ArgumentReader(args, Flags, Valued);
        reader.NoPositional();
        bool json = reader.Flag("--json");
        int? count = reader.Int("--count", 1, int.MaxValue);
        int? seconds = reader.Int("--timeout", 1, 7 * 24 * 3600);

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

    /// <summary>One JSON object per event: the type, then every attribute present (numbers as numbers).</summary>
    internal static string Json(PathManagerEvent e)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream))
        {
            json.WriteStartObject();
            json.WriteString("type", e.TypeName);
            foreach ((string name, string value) in e.GetAttributes())
            {
                if (!TextAttributes.Contains(name) && long.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out long number))
                {
                    json.WriteNumber(name, number);
                }
                else
                {
                    json.WriteString(name, value);
                }
            }

            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }
}
