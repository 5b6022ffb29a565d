using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;

namespace MptcpAnycast.Tests.Common;

/// <summary>
/// Counts what one meter records, per instrument (<c>name</c>) and per instrument and tag value (<c>name|value</c>):
/// counters add their values, histograms count their records, gauges keep the last observed value.
/// </summary>
public sealed class MetricRecorder : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<string, double> _totals = new();
    private readonly ConcurrentDictionary<string, int> _gauges = new();

    /// <param name="factory">Only meters made by this factory are recorded, so tests running in parallel do not see each other.</param>
    /// <param name="meterName">The meter's name (the transport's is <c>MptcpAnycast</c>).</param>
    public MetricRecorder(IMeterFactory factory, string meterName = "MptcpAnycast")
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == meterName && instrument.Meter.Scope == factory)
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((i, v, tags, _) => Add(i.Name, v, tags));
        _listener.SetMeasurementEventCallback<double>((i, _, tags, _) => Add(i.Name, 1, tags));
        _listener.SetMeasurementEventCallback<int>((i, v, _, _) => _gauges[i.Name] = v);
        _listener.Start();
    }

    /// <summary>A fresh meter factory, as a host's <c>AddMetrics()</c> makes it.</summary>
    public static IMeterFactory CreateFactory() =>
        new ServiceCollection().AddMetrics().BuildServiceProvider().GetRequiredService<IMeterFactory>();

    public double this[string key] => _totals.TryGetValue(key, out double v) ? v : 0;

    /// <summary>Observes the meter's observable instruments now and returns what <paramref name="name"/> reported, or null.</summary>
    public int? Observe(string name)
    {
        _gauges.TryRemove(name, out _);
        _listener.RecordObservableInstruments();
        return _gauges.TryGetValue(name, out int v) ? v : null;
    }

    public void Dispose() => _listener.Dispose();

    private void Add(string name, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        _totals.AddOrUpdate(name, value, (_, old) => old + value);
        foreach (KeyValuePair<string, object?> tag in tags)
        {
            _totals.AddOrUpdate($"{name}|{tag.Value}", value, (_, old) => old + value);
        }
    }
}
