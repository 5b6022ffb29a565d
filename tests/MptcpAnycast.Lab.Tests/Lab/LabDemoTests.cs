using System.Diagnostics;
using System.Globalization;
using MptcpAnycast.Lab.Tests.Infrastructure;

namespace MptcpAnycast.Lab.Tests.Lab;

/// <summary>
/// <c>lab demo</c> as a user meets it: a signal (Ctrl-C, SIGTERM, a closed terminal) stops it at once and leaves no
/// namespace behind; a case that fails says why and how to fix it; <c>--plot</c> draws the run.
/// </summary>
[Collection(AnycastLabCollection.Name)]
public sealed class LabDemoTests
{
    /// <summary>How soon after the signal the lab must be gone.</summary>
    private static readonly TimeSpan RemovalBound = TimeSpan.FromSeconds(2);

    // The demo runs as the tool runs it, a process of its own, so the signal reaches it and nothing else. It starts with
    // the signals' default handling (env --default-signal): a process started in the background by a shell without job
    // control inherits SIGINT ignored, and would pass that on.
    [LabTheory]
    [InlineData("INT")]
    [InlineData("TERM")]
    [InlineData("HUP")]
    public async Task A_signal_stops_the_progress_at_once_and_removes_the_lab_within_2_s(string signal)
    {
        string prefix = LabPrefix.New();
        ChildProcess demo = ChildProcess.Start(["env", "--default-signal=HUP,INT,TERM", "dotnet", LabTool.AssemblyPath, "lab", "demo", "--prefix", prefix,
            "--seconds", "60", "--flip-after", "50", "--no-curl", "--no-rescue"]);
        try
        {
            // A progress line: the lab is up, its POP servers run, both clients stream.
            Assert.True(await demo.WaitForLineAsync("  t=", TimeSpan.FromSeconds(120)), demo.Output);
            Assert.Equal(4, Topology.Existing(prefix).Count);
            int linesBefore = Lines(demo).Length;

            CommandRunner.Run("kill", ["-s", signal, demo.Pid.ToString(CultureInfo.InvariantCulture)]);
            var clock = Stopwatch.StartNew();
            while (Topology.Existing(prefix).Count > 0 && clock.Elapsed < RemovalBound)
            {
                await Task.Delay(50);
            }

            TimeSpan removedAfter = clock.Elapsed;
            Assert.True(Topology.Existing(prefix).Count == 0,
                $"SIG{signal}: {string.Join(", ", Topology.Existing(prefix))} still there {RemovalBound.TotalSeconds} s after the signal:\n{demo.Output}");
            Assert.True(await demo.WaitForExitAsync(TimeSpan.FromSeconds(5)), $"SIG{signal}: the demo still runs 5 s after the signal:\n{demo.Output}");
            Assert.Equal(1, demo.ExitCode);

            // At most the one line that was being written when the signal came; before, a Ctrl-C printed dozens.
            string[] after = Lines(demo)[linesBefore..];
            Assert.True(after.Count(l => l.StartsWith("  t=", StringComparison.Ordinal)) <= 1, $"SIG{signal}: progress went on:\n{string.Join('\n', after)}");
            string name = signal == "INT" ? "Ctrl-C (SIGINT)" : "SIG" + signal;
            Assert.Contains("  interrupted: removing the lab", after);
            Assert.Contains(after, l => l.StartsWith($"mptcp-anycast lab demo: interrupted by {name}", StringComparison.Ordinal) && l.Contains("the lab was removed (4 namespaces"));
            Assert.True(removedAfter < RemovalBound, $"removed after {removedAfter.TotalMilliseconds:0} ms");
        }
        finally
        {
            if (!demo.HasExited)
            {
                demo.Kill();
            }

            demo.Dispose();
            LabTopology.Down(prefix);
        }
    }

    // The client's default limits (add_addr_accepted 0) drop the server's ADD_ADDR: the MPTCP connection keeps only its
    // anycast subflow and dies at the flip. The demo must say so, and give the command that fixes it.
    [LabFact]
    public async Task A_client_with_default_limits_dies_and_the_demo_prints_the_reason_the_fix_and_a_plot()
    {
        string prefix = LabPrefix.New();
        string plot = Path.Combine(Path.GetTempPath(), $"{prefix}-demo.png");
        var output = new StringWriter();
        try
        {
            var options = new LabOptions { Prefix = prefix, Client = LabClientLimits.Defaults, PathManager = LabPathManager.Userspace };
            var settings = new DemoSettings { Seconds = 4, FlipAfter = 2, Curl = false, Rescue = false, PlotPath = plot };
            int exit = await LabDemo.RunAsync(options, settings, LabTool.Command, output, CancellationToken.None).WithTimeout(TimeSpan.FromSeconds(150), "lab demo");
            string text = output.ToString();
            string unwrapped = System.Text.RegularExpressions.Regex.Replace(text, "\n {8}(?! )", " "); // why: and fix: wrap under their text

            Assert.True(exit == 1, text);
            Assert.Contains("The MPTCP connection did NOT survive the route change", text);
            Assert.Matches(@"\n  why:  the server announced .*\(JoinTimedOut\).*add_addr_accepted 0\) drop it", unwrapped);
            Assert.Contains("\n  fix:  on the client: ip mptcp limits set add_addr_accepted 1 subflows 1", unwrapped);
            Assert.Contains("--client accept-add-addr", unwrapped);
            Assert.Empty(Topology.Existing(prefix));

            byte[] png = File.ReadAllBytes(plot);
            Assert.Equal(DemoPlotTests.PngSignature, png[..8]);
            Assert.Equal((DemoPlot.Width, DemoPlot.Height), DemoPlotTests.PngSize(png));
        }
        finally
        {
            LabTopology.Down(prefix);
            File.Delete(plot);
        }
    }

    // With rescue the same connection survives, tunnelled like a plain TCP one: the demo says that it did not survive on
    // its own, and why.
    [LabFact]
    public async Task A_client_with_default_limits_rescued_by_the_agent_gets_a_note_with_the_reason_and_the_fix()
    {
        string prefix = LabPrefix.New();
        var output = new StringWriter();
        try
        {
            var options = new LabOptions { Prefix = prefix, Client = LabClientLimits.Defaults, PathManager = LabPathManager.Userspace };
            var settings = new DemoSettings { Seconds = 4, FlipAfter = 2, Curl = false, Rescue = true };
            int exit = await LabDemo.RunAsync(options, settings, LabTool.Command, output, CancellationToken.None).WithTimeout(TimeSpan.FromSeconds(150), "lab demo");
            string unwrapped = System.Text.RegularExpressions.Regex.Replace(output.ToString(), "\n {8}(?! )", " ");

            Assert.True(exit == 0, unwrapped);
            Assert.Contains("The MPTCP connection survived the anycast route change", unwrapped);
            Assert.Matches(@"\n  note: the MPTCP connection survived only through the rescue agent, .*add_addr_accepted 0\) drop it", unwrapped);
            Assert.Contains("\n  fix:  on the client: ip mptcp limits set add_addr_accepted 1 subflows 1", unwrapped);
        }
        finally
        {
            LabTopology.Down(prefix);
        }
    }

    private static string[] Lines(ChildProcess process) => process.Output.Split('\n');
}
