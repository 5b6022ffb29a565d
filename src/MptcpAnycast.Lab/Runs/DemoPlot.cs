using System.Globalization;
using ScottPlot;

namespace MptcpAnycast.Lab;

/// <summary>One sample of a client's stream: how much had arrived how long after the streams started.</summary>
public readonly record struct DemoSample(double Seconds, long Bytes);

/// <summary>One client of the demo as its plot shows it: its samples, when it died (if it did), and its result.</summary>
/// <param name="Name">The client, as the demo's table names it (<c>MPTCP (.NET)</c>).</param>
/// <param name="Samples">Bytes received over time, in time order.</param>
/// <param name="DiedAt">Seconds after the start when the demo saw the stream fail; null when it did not.</param>
/// <param name="Result">The table's word for it: <c>SURVIVED</c>, <c>DIED: ...</c>.</param>
public sealed record DemoClientRecord(string Name, IReadOnlyList<DemoSample> Samples, double? DiedAt, string Result);

/// <summary>What <c>lab demo --plot FILE</c> draws.</summary>
/// <param name="Case">The lab's case in words (path manager, client limits, unicast, rescue).</param>
/// <param name="Outcome">One line: who survived the route change.</param>
/// <param name="FlipAt">Seconds after the start when the anycast route moved; null when it never did.</param>
/// <param name="FlippedTo">The POP the route moved to.</param>
/// <param name="Expected">Bytes each stream carries when complete.</param>
/// <param name="Clients">The clients, in the table's order.</param>
public sealed record DemoRecord(string Case, string Outcome, double? FlipAt, LabPopId FlippedTo, long Expected, IReadOnlyList<DemoClientRecord> Clients);

/// <summary>
/// The demo's picture: bytes received over time for each client, the flip marked, titled with the case and the outcome.
/// A PNG or an SVG, by the file's extension, drawn with ScottPlot (SkiaSharp underneath, whose Linux library needs no
/// system package; the text needs a font on the machine, such as Debian's <c>fonts-dejavu-core</c>).
/// </summary>
public static class DemoPlot
{
    public const int Width = 1000;
    public const int Height = 560;

    private static readonly Color[] Palette = [Color.FromHex("#1f77b4"), Color.FromHex("#ff7f0e"), Color.FromHex("#2ca02c"), Color.FromHex("#9467bd")];

    /// <summary>The extensions <see cref="Write"/> takes.</summary>
    public static readonly IReadOnlyList<string> Extensions = [".png", ".svg"];

    /// <summary>
    /// Checks a plot path before the run: it ends in <c>.png</c> or <c>.svg</c> (any case) and its folder exists. Returns
    /// the problem, naming the path, or null.
    /// </summary>
    public static string? ValidatePath(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        string extension = Path.GetExtension(path);
        if (!Extensions.Contains(extension, StringComparer.OrdinalIgnoreCase))
        {
            return $"the plot file must end in {string.Join(" or ", Extensions)} (got '{path}')";
        }

        string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder is not null && !Directory.Exists(folder))
        {
            return $"the plot file's folder {folder} does not exist (got '{path}')";
        }

        return Directory.Exists(path) ? $"the plot file '{path}' is a folder" : null;
    }

    /// <summary>
    /// Why the plot cannot be drawn on this machine, or null: SkiaSharp's native library must load (the tool carries it
    /// for Linux x64 and arm64 with glibc; see <c>MptcpAnycast.Lab.NativeAssets.targets</c>).
    /// </summary>
    public static string? CannotDraw()
    {
        try
        {
            _ = SkiaSharp.SKTypeface.Default.GlyphCount;
            return null;
        }
        catch (Exception ex) when (ex is DllNotFoundException or TypeInitializationException or BadImageFormatException or EntryPointNotFoundException)
        {
            return $"cannot draw the plot on this machine: SkiaSharp's native library did not load ({(ex.InnerException ?? ex).Message})";
        }
    }

    /// <summary>Whether the machine has a font to draw the plot's text with (without one, the picture has lines but no words).</summary>
    /// <remarks>Without fonts Skia still has a default typeface, one without glyphs.</remarks>
    public static bool HasFonts => SkiaSharp.SKTypeface.Default.GlyphCount > 0;

    /// <summary>Draws <paramref name="record"/> into <paramref name="path"/> (PNG or SVG by extension; see <see cref="ValidatePath"/>).</summary>
    public static void Write(string path, DemoRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        if (ValidatePath(path) is string problem)
        {
            throw new ArgumentException(problem, nameof(path));
        }

        using var plot = new Plot();
        // ScottPlot's own guess of a sans font falls back to a serif one on Debian; DejaVu Sans is Debian's default.
        plot.Font.Set(SkiaSharp.SKFontManager.Default.FontFamilies.Contains("DejaVu Sans") ? "DejaVu Sans" : Fonts.Sans);

        plot.Title($"lab demo: {record.Case}\n{record.Outcome}", size: 15);
        plot.XLabel("seconds since the streams started");
        plot.YLabel("KiB received");

        double end = Math.Max(1, record.Clients.SelectMany(c => c.Samples).Select(s => s.Seconds).DefaultIfEmpty(0).Max());
        double expectedKiB = record.Expected / 1024.0;
        double top = Math.Max(expectedKiB, record.Clients.SelectMany(c => c.Samples).Select(s => s.Bytes / 1024.0).DefaultIfEmpty(1).Max()) * 1.12;
        if (record.Expected > 0)
        {
            var all = plot.Add.HorizontalLine(expectedKiB, width: 1, color: Colors.Gray, pattern: LinePattern.Dotted);
            all.ExcludeFromLegend = true;
            var allText = plot.Add.Text(string.Create(CultureInfo.InvariantCulture, $"the whole stream: {record.Expected / 1024} KiB"), end, expectedKiB);
            allText.LabelAlignment = Alignment.LowerRight;
            allText.LabelFontSize = 12;
            allText.LabelFontColor = Colors.Gray;
        }

        if (record.FlipAt is double flip)
        {
            var line = plot.Add.VerticalLine(flip, width: 2, color: Colors.Red, pattern: LinePattern.Dashed);
            line.ExcludeFromLegend = true;
            var flipText = plot.Add.Text(string.Create(CultureInfo.InvariantCulture, $" flip at {flip:0.0} s: the anycast route moves to POP {record.FlippedTo}"), flip, top * 0.97);
            flipText.LabelAlignment = Alignment.UpperLeft;
            flipText.LabelFontSize = 13;
            flipText.LabelFontColor = Colors.Red;
        }

        for (int i = 0; i < record.Clients.Count; i++)
        {
            DemoClientRecord client = record.Clients[i];
            Color color = Palette[i % Palette.Length];
            double[] xs = [.. client.Samples.Select(s => s.Seconds)];
            double[] ys = [.. client.Samples.Select(s => s.Bytes / 1024.0)];
            var scatter = plot.Add.ScatterLine(xs, ys, color);
            scatter.LineWidth = i == 0 ? 5 : 2.5f; // the first under the others, wider: both show where they overlap
            scatter.LegendText = $"{client.Name}: {client.Result}";
            if (client.DiedAt is double died && client.Samples.Count > 0)
            {
                double bytesThen = client.Samples.LastOrDefault(s => s.Seconds <= died, client.Samples[0]).Bytes / 1024.0;
                var marker = plot.Add.Marker(new Coordinates(died, bytesThen), MarkerShape.Eks, 14, color);
                marker.MarkerLineWidth = 3;
                marker.LegendText = "";
            }
        }

        plot.ShowLegend(Alignment.LowerRight); // below the lines' ends and away from the flip's label
        plot.Axes.SetLimitsX(0, end * 1.02);
        plot.Axes.SetLimitsY(0, top);

        if (Path.GetExtension(path).Equals(".svg", StringComparison.OrdinalIgnoreCase))
        {
            plot.SaveSvg(path, Width, Height);
        }
        else
        {
            plot.SavePng(path, Width, Height);
        }
    }
}
