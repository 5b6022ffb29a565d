using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace MptcpAnycast.Tests.Common;

/// <summary>Keeps what was logged: level, event id and the formatted message. Also a provider, for hosts.</summary>
public sealed class RecordingLogger : ILogger, ILoggerProvider
{
    public ConcurrentQueue<(LogLevel Level, int EventId, string Message)> Entries { get; } = new();

    public int Count(int eventId) => Entries.Count(e => e.EventId == eventId);

    public IEnumerable<string> Messages(int eventId) => Entries.Where(e => e.EventId == eventId).Select(e => e.Message);

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
        Entries.Enqueue((logLevel, eventId.Id, formatter(state, exception)));

    ILogger ILoggerProvider.CreateLogger(string categoryName) => this;

    void IDisposable.Dispose()
    {
    }
}
