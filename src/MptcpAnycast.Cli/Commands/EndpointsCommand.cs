using System.Net;
using System.Text.Json;
using MptcpAnycast.Cli.CommandLine;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Cli.Commands;

/// <summary><c>mptcp-anycast endpoints list|add|delete|flush</c>: the in-kernel path manager's endpoints, as <c>ip mptcp endpoint</c>.</summary>
internal static class EndpointsCommand
{
    private static readonly HashSet<string> Flags = ["--json"];
    private static readonly HashSet<string> Valued = ["--id", "--port", "--dev", "--flags"];

    public static async Task<int> RunAsync(string[] args, TextWriter output)
    {
        var reader = new ArgumentReader(args, Flags, Valued);
        IReadOnlyList<string> words = reader.Positional;
        string action = words.Count > 0 ? words[0] : "list";
        switch (action)
        {
            case "list" or "show":
                reader.OnlyOptions($"endpoints {action}", "--json");
                Only(words, 1);
                await using (PathManagerClient pm = await PathManagerArguments.OpenAsync().ConfigureAwait(false))
                {
                    IReadOnlyList<MptcpEndpoint> endpoints = await pm.GetEndpointsAsync().ConfigureAwait(false);
                    output.Write(reader.Flag("--json") ? Json(endpoints) : string.Concat(endpoints.Select(e => e.ToString() + Environment.NewLine)));
                }

                return 0;

            case "add":
                reader.OnlyOptions("endpoints add", "--id", "--port", "--dev", "--flags");
                Only(words, 2);
                if (words.Count < 2)
                {
                    throw new UsageException("endpoints add needs an ADDRESS");
                }

                IPAddress address = PathManagerArguments.Address("ADDRESS", words[1]);
                int id = reader.Int("--id", 1, 255) ?? 0;
                int port = reader.Int("--port", 1, 65535) ?? 0;
                MptcpEndpointFlags flags = PathManagerArguments.Flags(reader.Value("--flags"));
                string? dev = reader.Value("--dev");
                int ifindex = dev is null ? 0 : HostInterfaces.IndexOf(dev);
                if (dev is not null && ifindex == 0)
                {
                    throw new UsageException($"option '--dev': no interface '{dev}' here");
                }

                await using (PathManagerClient pm = await PathManagerArguments.OpenAsync().ConfigureAwait(false))
                {
                    byte assigned = await pm.AddEndpointAsync(new MptcpEndpoint((byte)id, address, port, flags, ifindex)).ConfigureAwait(false);
                    output.WriteLine((await pm.GetEndpointAsync(assigned).ConfigureAwait(false)).ToString());
                }

                return 0;

            case "delete":
                reader.OnlyOptions("endpoints delete", "--id");
                Only(words, 1);
                byte deleteId = (byte)(reader.Int("--id", 1, 255) ?? throw new UsageException("option '--id' is required"));
                await using (PathManagerClient pm = await PathManagerArguments.OpenAsync().ConfigureAwait(false))
                {
                    await pm.DeleteEndpointAsync(deleteId).ConfigureAwait(false);
                }

                output.WriteLine($"deleted endpoint id {deleteId}");
                return 0;

            case "flush":
                reader.OnlyOptions("endpoints flush");
                Only(words, 1);
                await using (PathManagerClient pm = await PathManagerArguments.OpenAsync().ConfigureAwait(false))
                {
                    await pm.FlushEndpointsAsync().ConfigureAwait(false);
                }

                output.WriteLine("flushed all endpoints");
                return 0;

            default:
                throw new UsageException($"unknown action '{action}' (list, add, delete, flush)");
        }
    }

    private static void Only(IReadOnlyList<string> words, int count)
    {
        if (words.Count > count)
        {
            throw new UsageException($"unexpected argument '{words[count]}'");
        }
    }

    private static string Json(IReadOnlyList<MptcpEndpoint> endpoints)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream))
        {
            json.WriteStartArray();
            foreach (MptcpEndpoint e in endpoints)
            {
                json.WriteStartObject();
                json.WriteNumber("id", e.Id);
                json.WriteString("address", e.Address.ToString());
                json.WriteNumber("port", e.Port);
                json.WriteStartArray("flags");
                foreach (string flag in PathManagerArguments.FlagNames(e.Flags))
                {
                    json.WriteStringValue(flag);
                }

                json.WriteEndArray();
                json.WriteNumber("ifindex", e.InterfaceIndex);
                json.WriteString("dev", HostInterfaces.NameOf(e.InterfaceIndex));
                json.WriteEndObject();
            }

            json.WriteEndArray();
        }

        return System.Text.Encoding.UTF8.GetString(stream.ToArray()) + Environment.NewLine;
    }
}
