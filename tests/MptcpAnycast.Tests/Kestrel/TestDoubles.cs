using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Microsoft.Extensions.DependencyInjection;
using MptcpAnycast.Kestrel.Announcing;
using MptcpAnycast.Kestrel.Diagnostics;

namespace MptcpAnycast.Tests.Kestrel;

/// <summary>A path manager that records commands, lets a test inject events and failures.</summary>
internal sealed class FakePathManager : IPathManager
{
    private volatile Channel<PathEvent> _events = Channel.CreateUnbounded<PathEvent>();
    private int _resubscribeCalls;

    public ConcurrentQueue<string> Calls { get; } = new();

    public Func<uint, IPEndPoint, Task> Announce { get; set; } = (_, _) => Task.CompletedTask;

    public bool WithEvents { get; init; } = true;

    /// <summary>Decides each attempt to subscribe again (true: a fresh stream); default: works.</summary>
    public Func<bool> Resubscribe { get; set; } = () => true;

    public int ResubscribeCalls => Volatile.Read(ref _resubscribeCalls);

    public void Emit(PathEvent e) => _events.Writer.TryWrite(e);

    /// <summary>Ends the current event stream with <paramref name="error"/>, as a failed event socket does; null: ends it quietly.</summary>
    public void FailEvents(Exception? error) => _events.Writer.TryComplete(error);

    public bool TryResubscribeEvents(out string? problem)
    {
        Interlocked.Increment(ref _resubscribeCalls);
        if (!Resubscribe())
        {
            problem = "fake: the event socket cannot be opened";
            return false;
        }

        _events = Channel.CreateUnbounded<PathEvent>();
        problem = null;
        return true;
    }

    public Task AnnounceAsync(uint token, byte addressId, IPEndPoint address, CancellationToken cancellationToken)
    {
        Calls.Enqueue($"announce {token:x8} {addressId} {address}");
        return Announce(token, address);
    }

    public Task SetBackupAsync(uint token, IPEndPoint local, IPEndPoint remote, bool backup, CancellationToken cancellationToken)
    {
        Calls.Enqueue($"backup {token:x8} {local} {remote} {backup}");
        return Task.CompletedTask;
    }

    public Task DestroySubflowAsync(uint token, IPEndPoint local, IPEndPoint remote, CancellationToken cancellationToken)
    {
        Calls.Enqueue($"destroy {token:x8} {local} {remote}");
        return Task.CompletedTask;
    }

    public IAsyncEnumerable<PathEvent>? Events => WithEvents ? _events.Reader.ReadAllAsync() : null;

    public PathManagerFailure Classify(Exception exception) => exception is FakePathManagerException f ? f.Kind : PathManagerFailure.Systemic;

    public ValueTask DisposeAsync()
    {
        _events.Writer.TryComplete();
        return default;
    }
}

internal sealed class FakePathManagerException(PathManagerFailure kind) : Exception($"fake {kind} failure")
{
    public PathManagerFailure Kind { get; } = kind;
}

/// <summary>Counts what the MptcpAnycast meter records, per instrument and tag value.</summary>
internal sealed class MetricRecorder : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<string, double> _totals = new();

    public MetricRecorder(IMeterFactory factory)
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == MptcpAnycastMetrics.MeterName && instrument.Meter.Scope == factory)
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((i, v, tags, _) => Add(i.Name, v, tags));
        _listener.SetMeasurementEventCallback<double>((i, v, tags, _) => Add(i.Name, 1, tags));
        _listener.SetMeasurementEventCallback<int>((i, v, _, _) => _gauges[i.Name] = v);
        _listener.Start();
    }

    private readonly ConcurrentDictionary<string, int> _gauges = new();

    public double this[string key] => _totals.TryGetValue(key, out double v) ? v : 0;

    /// <summary>Observes the meter's observable instruments now and returns what <paramref name="name"/> reported, or null.</summary>
    public int? Observe(string name)
    {
        _gauges.TryRemove(name, out _);
        _listener.RecordObservableInstruments();
        return _gauges.TryGetValue(name, out int v) ? v : null;
    }

    private void Add(string name, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        _totals.AddOrUpdate(name, value, (_, old) => old + value);
        foreach (KeyValuePair<string, object?> tag in tags)
        {
            _totals.AddOrUpdate($"{name}|{tag.Value}", value, (_, old) => old + value);
        }
    }

    public void Dispose() => _listener.Dispose();
}

/// <summary>A loopback MPTCP connection: the accepted server socket and the client.</summary>
internal sealed class LoopbackPair : IDisposable
{
    private LoopbackPair(Socket listener, Socket client, Socket server)
    {
        Listener = listener;
        Client = client;
        Server = server;
    }

    public Socket Listener { get; }
    public Socket Client { get; }
    public Socket Server { get; }

    public static async Task<LoopbackPair> ConnectAsync(bool mptcpClient = true)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        Socket listener = MptcpSocket.CreateListener(new IPEndPoint(IPAddress.Loopback, 0));
        Socket client = mptcpClient ? MptcpSocket.Create(AddressFamily.InterNetwork) : new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(listener.LocalEndPoint!, cts.Token);
        Socket server = await listener.AcceptAsync(cts.Token);
        return new LoopbackPair(listener, client, server);
    }

    public void Dispose()
    {
        Server.Dispose();
        Client.Dispose();
        Listener.Dispose();
    }
}

/// <summary>Keeps what was logged: level, event id and the formatted message.</summary>
internal sealed class RecordingLogger : Microsoft.Extensions.Logging.ILogger
{
    public ConcurrentQueue<(Microsoft.Extensions.Logging.LogLevel Level, int EventId, string Message)> Entries { get; } = new();

    public int Count(int eventId) => Entries.Count(e => e.EventId == eventId);

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;

    public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state,
        Exception? exception, Func<TState, Exception?, string> formatter) => Entries.Enqueue((logLevel, eventId.Id, formatter(state, exception)));
}

internal static class Meters
{
    public static IMeterFactory Create() => new ServiceCollection().AddMetrics().BuildServiceProvider().GetRequiredService<IMeterFactory>();
}

internal static class Eventually
{
    public static async Task TrueAsync(Func<bool> condition, string what, int timeoutMs = 5000)
    {
        var deadline = DateTime.UtcNow.AddMilliseconds(timeoutMs);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"timed out after {timeoutMs} ms waiting for: {what}");
            }

            await Task.Delay(10);
        }
    }
}
