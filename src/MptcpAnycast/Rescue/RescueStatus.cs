using System.Text.Json;

namespace MptcpAnycast.Rescue;

/// <summary>A snapshot of a running agent: its configuration, the owner map and every counter.</summary>
public sealed record RescueStatus
{
    /// <summary>This POP's name in the lookup protocol.</summary>
    public required string Name { get; init; }

    /// <summary>The uplink the program is attached to.</summary>
    public required string Interface { get; init; }

    /// <summary>How the programs are attached to <see cref="Interface"/>: <c>tcx</c> (Linux 6.6+) or <c>clsact</c> (a qdisc's filters).</summary>
    public required string Attachment { get; init; }

    /// <summary>The kernel's ids of the ingress and egress programs, in that order (<c>bpftool prog show id N</c>).</summary>
    public required IReadOnlyList<long> ProgramIds { get; init; }

    /// <summary>The anycast addresses whose segments are steered.</summary>
    public required IReadOnlyList<string> Anycast { get; init; }

    /// <summary>This POP's unicast addresses (tunnel end, lookup protocol).</summary>
    public required IReadOnlyList<string> Unicast { get; init; }

    /// <summary>The peers, "name (addresses)".</summary>
    public required IReadOnlyList<string> Peers { get; init; }

    /// <summary>When the agent started.</summary>
    public required DateTimeOffset StartedAt { get; init; }

    /// <summary>How many flows the owner map can hold (least recently used ones go first when it is full).</summary>
    public required int OwnerCapacity { get; init; }

    /// <summary>Up to 100 of the owner map's entries, "flow => owner".</summary>
    public required IReadOnlyList<string> Owners { get; init; }

    /// <summary>Flows whose owner is being looked up now.</summary>
    public required int PendingLookups { get; init; }

    /// <summary>Counters by name: <c>program.*</c> (the BPF program's), <c>lookups.*</c> (the agent's), <c>peers.*</c> (the lookup protocol's), <c>owners.expired</c> (owner entries deleted after <see cref="RescueOptions.OwnerIdleTimeout"/>).</summary>
    public required IReadOnlyDictionary<string, long> Counters { get; init; }

    /// <summary>The status as one JSON object (what <c>mptcp-anycast rescue status --json</c> prints).</summary>
    public string ToJson()
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("name", Name);
            json.WriteString("interface", Interface);
            json.WriteString("attachment", Attachment);
            json.WriteStartArray("programIds");
            foreach (long id in ProgramIds)
            {
                json.WriteNumberValue(id);
            }

            json.WriteEndArray();
            json.WriteString("startedAt", StartedAt);
            json.WriteString("writtenAt", DateTimeOffset.UtcNow);
            Strings(json, "anycast", Anycast);
            Strings(json, "unicast", Unicast);
            Strings(json, "peers", Peers);
            json.WriteNumber("ownerCapacity", OwnerCapacity);
            json.WriteNumber("pendingLookups", PendingLookups);
            Strings(json, "owners", Owners);
            json.WriteStartObject("counters");
            foreach ((string name, long value) in Counters.OrderBy(c => c.Key, StringComparer.Ordinal))
            {
                json.WriteNumber(name, value);
            }

            json.WriteEndObject();
            json.WriteEndObject();
        }

        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    private static void Strings(Utf8JsonWriter json, string name, IEnumerable<string> values)
    {
        json.WriteStartArray(name);
        foreach (string value in values)
        {
            json.WriteStringValue(value);
        }

        json.WriteEndArray();
    }
}
