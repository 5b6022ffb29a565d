using Microsoft.Extensions.Logging;
using MptcpAnycast.Kestrel.Diagnostics;
using MptcpAnycast.PathManagement;
using Polly;
using Polly.CircuitBreaker;
using Polly.Retry;

namespace MptcpAnycast.Kestrel.Control;

/// <summary>
/// How the control path runs a path-manager command: a transient failure (<see cref="PathManagerErrorKind.Transient"/>)
/// is retried up to 3 times, 2 to about 16 ms apart; when at least half of 10 or more commands within 10 s fail because
/// the path manager is unavailable (no permission, a broken socket, no answer within the command timeout), the circuit
/// opens and commands fail at once (<see cref="BrokenCircuitException"/>) for the break duration. No timeout strategy:
/// the command socket's receive timeout is the bound that holds, since the exchange is synchronous.
/// </summary>
internal sealed class ControlPlanePipeline
{
    private readonly ResiliencePipeline _pipeline;
    private readonly CircuitBreakerStateProvider _circuit = new();

    public ControlPlanePipeline(TimeSpan breakDuration, ILogger logger)
    {
        _pipeline = new ResiliencePipelineBuilder()
            .AddCircuitBreaker(new CircuitBreakerStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<PathManagerException>(ex => ex.Kind == PathManagerErrorKind.Unavailable),
                FailureRatio = 0.5,
                MinimumThroughput = 10,
                SamplingDuration = TimeSpan.FromSeconds(10),
                BreakDuration = breakDuration,
                StateProvider = _circuit,
                OnOpened = args =>
                {
                    MptcpAnycastLog.PathManagerUnavailable(logger, args.Outcome.Exception);
                    return default;
                },
                OnClosed = _ =>
                {
                    MptcpAnycastLog.PathManagerRecovered(logger);
                    return default;
                },
            })
            .AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<PathManagerException>(ex => ex.Kind == PathManagerErrorKind.Transient),
                MaxRetryAttempts = 3,
                Delay = TimeSpan.FromMilliseconds(2),
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
            })
            .Build();
    }

    /// <summary>
    /// Whether the circuit is open or half-open: announcements are paused because the path manager failed for
    /// everyone, until a trial command after the break duration works.
    /// </summary>
    public bool IsCircuitOpen => _circuit.CircuitState != CircuitState.Closed;

    /// <summary>Runs <paramref name="command"/> on the calling thread (the control loop's), with retries and the circuit breaker.</summary>
    /// <exception cref="PathManagerException">The command failed for good.</exception>
    /// <exception cref="BrokenCircuitException">The circuit is open: the command was not sent.</exception>
    public void Execute<TState>(Action<TState> command, TState state) => _pipeline.Execute(command, state);
}
