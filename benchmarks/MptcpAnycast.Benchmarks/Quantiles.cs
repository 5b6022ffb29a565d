namespace MptcpAnycast.Benchmarks;

/// <summary>Quantiles of the harnesses' samples, interpolated between the two nearest values (R's type 7).</summary>
internal static class Quantiles
{
    /// <summary>The <paramref name="q"/> quantile of <paramref name="sorted"/> (ascending, not empty).</summary>
    public static double Of(double[] sorted, double q)
    {
        double position = q * (sorted.Length - 1);
        int below = (int)Math.Floor(position);
        int above = Math.Min(below + 1, sorted.Length - 1);
        return sorted[below] + (sorted[above] - sorted[below]) * (position - below);
    }
}
