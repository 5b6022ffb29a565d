using System.Collections.Concurrent;
using System.Diagnostics.Tracing;
using System.Globalization;

namespace MptcpAnycast.Benchmarks;

/// <summary>
/// Notes every garbage collection of this process with its generation, kind and the runtime's reason for it (the
/// runtime's own GCStart event), so a harness can say which collections paused it and why.
/// </summary>
internal sealed class GcWatcher : EventListener
{
    private const int GcStartEventId = 1;
    private const EventKeywords GcKeyword = (EventKeywords)0x1;

    // The runtime's gc_reason values (GCStart's Reason field).
    private static readonly string[] Reasons =
    [
        "small-object allocation budget", "induced", "low memory", "empty", "large-object allocation budget",
        "out of space (small objects)", "out of space (large objects)", "induced, not forced", "internal", "induced, low memory",
        "induced, compacting", "low memory (host)", "provisional full GC", "low memory (host, blocking)",
    ];

    // The runtime's gc_type values (GCStart's Type field).
    private static readonly string[] Kinds = ["blocking", "background", "foreground during background"];

    private readonly ConcurrentQueue<string> _collections = new();

    /// <summary>Takes the notes so far and starts afresh.</summary>
    public IReadOnlyList<string> Take()
    {
        var taken = new List<string>();
        while (_collections.TryDequeue(out string? line))
        {
            taken.Add(line);
        }

        return taken;
    }

    protected override void OnEventSourceCreated(EventSource eventSource)
    {
        if (eventSource.Name == "Microsoft-Windows-DotNETRuntime")
        {
            EnableEvents(eventSource, EventLevel.Informational, GcKeyword);
        }
    }

    protected override void OnEventWritten(EventWrittenEventArgs eventData)
    {
        if (eventData.EventId != GcStartEventId || eventData.Payload is not { Count: >= 4 } payload)
        {
            return;
        }

        uint depth = Convert.ToUInt32(payload[1], CultureInfo.InvariantCulture);
        uint reason = Convert.ToUInt32(payload[2], CultureInfo.InvariantCulture);
        uint kind = Convert.ToUInt32(payload[3], CultureInfo.InvariantCulture);
        _collections.Enqueue(string.Create(CultureInfo.InvariantCulture,
            $"gen{depth} {(kind < Kinds.Length ? Kinds[kind] : $"type {kind}")}, reason: {(reason < Reasons.Length ? Reasons[reason] : $"{reason}")}"));
    }
}
