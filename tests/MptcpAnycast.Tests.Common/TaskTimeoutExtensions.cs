namespace MptcpAnycast.Tests.Common;

/// <summary>
/// Every await in a test has a bound: <c>await task.WithTimeout()</c> fails the test with a <see cref="TimeoutException"/>
/// naming what it waited for, instead of hanging the run.
/// </summary>
public static class TaskTimeoutExtensions
{
    /// <summary>How long a test step may take unless it says otherwise: long enough for a loaded CI machine.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(15);

    public static async Task WithTimeout(this Task task, TimeSpan? timeout = null, string? what = null)
    {
        TimeSpan limit = timeout ?? DefaultTimeout;
        try
        {
            await task.WaitAsync(limit);
        }
        catch (TimeoutException) when (!task.IsCompleted)
        {
            throw new TimeoutException($"{what ?? "the awaited step"} did not finish within {limit.TotalSeconds:0.#} s");
        }
    }

    public static async Task<T> WithTimeout<T>(this Task<T> task, TimeSpan? timeout = null, string? what = null)
    {
        await ((Task)task).WithTimeout(timeout, what);
        return await task;
    }

    public static Task WithTimeout(this ValueTask task, TimeSpan? timeout = null, string? what = null) =>
        task.AsTask().WithTimeout(timeout, what);

    public static Task<T> WithTimeout<T>(this ValueTask<T> task, TimeSpan? timeout = null, string? what = null) =>
        task.AsTask().WithTimeout(timeout, what);

    /// <summary>A token that cancels after <paramref name="timeout"/> (default <see cref="DefaultTimeout"/>), for APIs that take one.</summary>
    public static CancellationToken Within(TimeSpan? timeout = null) => new CancellationTokenSource(timeout ?? DefaultTimeout).Token;
}
