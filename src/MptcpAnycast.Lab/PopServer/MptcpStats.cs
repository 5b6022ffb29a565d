using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Text;

namespace MptcpAnycast.Lab;

/// <summary>
/// The MptcpAnycast meter's counters (totals since start, one entry per instrument and tag value, e.g.
/// <c>mptcp_anycast.announcements{mptcp.announcement.result=sent}</c>) and gauges (the value now, e.g.
/// <c>mptcp_anycast.connections.tracked</c>), collected with a <see cref="MeterListener"/>. Histograms are left out.
/// </summary>
public sealed class MptcpStats : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<string, long> _values = new();
    private readonly ConcurrentDictionary<(string Name, string Tag, object? Value), string> _keys = new(); // no string built per measurement
    private readonly Lock _observing = new();

    public MptcpStats()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == "MptcpAnycast" && instrument is Counter<long> or ObservableGauge<int>)
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
            _values.AddOrUpdate(Key(instrument, tags), value, (_, total) => total + value));
        _listener.SetMeasurementEventCallback<int>((instrument, value, _, _) => _values[instrument.Name] = value);
        _listener.Start();
    }

    /// <summary>Every value, by name; gauges are observed now.</summary>
    public SortedDictionary<string, long> Read()
    {
        lock (_observing)
        {
            _listener.RecordObservableInstruments();
            return new SortedDictionary<string, long>(_values, StringComparer.Ordinal);
        }
    }

    public void Dispose() => _listener.Dispose();

    private string Key(Instrument instrument, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        if (tags.IsEmpty)
        {
            return instrument.Name;
        }

        if (tags.Length == 1)
        {
            return _keys.GetOrAdd((instrument.Name, tags[0].Key, tags[0].Value), static k => $"{k.Name}{{{k.Tag}={k.Value}}}");
        }

        var key = new StringBuilder(instrument.Name).Append('{');
        foreach (KeyValuePair<string, object?> tag in tags)
        {
            key.Append(tag.Key).Append('=').Append(tag.Value).Append(',');
        }

        key[^1] = '}';
        return key.ToString();
    }
}
