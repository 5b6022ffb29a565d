namespace MptcpAnycast.Tests.Common;

/// <summary>Waits for something that happens on another thread (an event, a timer, the kernel), with a bound.</summary>
public static class Eventually
{
    /// <summary>Polls <paramref name="condition"/> every 10 ms; fails the test, naming <paramref name="what"/>, if it is still false after the timeout.</summary>
    public static async Task TrueAsync(Func<bool> condition, string what, TimeSpan? timeout = null)
    {
        if (!await WaitAsync(condition, timeout ?? TaskTimeoutExtensions.DefaultTimeout))
        {
            Assert.Fail($"timed out after {(timeout ?? TaskTimeoutExtensions.DefaultTimeout).TotalSeconds:0.#} s waiting for: {what}");
        }
    }

    /// <summary>Polls <paramref name="condition"/> until it is true (returns true) or the timeout passes (returns false).</summary>
    public static async Task<bool> WaitAsync(Func<bool> condition, TimeSpan timeout)
    {
        DateTime deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                return condition();
            }

            await Task.Delay(10);
        }

        return true;
    }
}
