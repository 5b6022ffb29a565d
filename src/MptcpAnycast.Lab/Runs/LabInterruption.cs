using System.Runtime.InteropServices;

namespace MptcpAnycast.Lab;

/// <summary>
/// Turns Ctrl-C (SIGINT), SIGTERM and SIGHUP (the terminal closed) into a cancellation for as long as it is registered,
/// instead of the runtime's default of ending the process on the spot, which would leave a lab's namespaces behind. The
/// signal is cancelled (the process keeps running) so that the run can stop its children and remove its lab; a second
/// signal of the same kind is cancelled too, since the removal takes well under the time a user waits before trying again.
/// </summary>
public sealed class LabInterruption : IDisposable
{
    private static readonly PosixSignal[] Signals = [PosixSignal.SIGINT, PosixSignal.SIGTERM, PosixSignal.SIGHUP];

    private readonly CancellationTokenSource _cancel;
    private readonly PosixSignalRegistration[] _registrations;
    private int _signal;

    private LabInterruption(CancellationToken outer)
    {
        _cancel = CancellationTokenSource.CreateLinkedTokenSource(outer);
        _registrations = [.. Signals.Select(signal => PosixSignalRegistration.Create(signal, OnSignal))];
    }

    /// <summary>Cancelled at the first of the signals, or when the token given to <see cref="Register"/> is.</summary>
    public CancellationToken Token => _cancel.Token;

    /// <summary>The signal that cancelled <see cref="Token"/>; null before one came (or when the outer token cancelled it).</summary>
    public PosixSignal? Signal => Volatile.Read(ref _signal) is int s and not 0 ? (PosixSignal)s : null;

    /// <summary>Catches the signals from now until disposed; <paramref name="outer"/> (the caller's own cancellation) cancels too.</summary>
    public static LabInterruption Register(CancellationToken outer = default) => new(outer);

    /// <summary>
    /// How a person names a signal: <c>Ctrl-C (SIGINT)</c>, <c>SIGTERM</c>, <c>SIGHUP (the terminal closed)</c>; null (the
    /// caller's token) is <c>its caller</c>.
    /// </summary>
    public static string Describe(PosixSignal? signal) => signal switch
    {
        PosixSignal.SIGINT => "Ctrl-C (SIGINT)",
        PosixSignal.SIGTERM => "SIGTERM",
        PosixSignal.SIGHUP => "SIGHUP (the terminal closed)",
        null => "its caller",
        _ => signal.Value.ToString(),
    };

    public void Dispose()
    {
        foreach (PosixSignalRegistration registration in _registrations)
        {
            registration.Dispose();
        }

        _cancel.Dispose();
    }

    private void OnSignal(PosixSignalContext context)
    {
        context.Cancel = true;
        Interlocked.CompareExchange(ref _signal, (int)context.Signal, 0);
        try
        {
            // Not on the signal's own thread: the run's teardown continues from the cancellation.
            _ = _cancel.CancelAsync();
        }
        catch (ObjectDisposedException)
        {
            // Disposed while the signal was delivered: the run is over.
        }
    }
}
