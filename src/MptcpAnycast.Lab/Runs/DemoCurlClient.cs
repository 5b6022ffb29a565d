using System.Globalization;

namespace MptcpAnycast.Lab;

/// <summary>The demo's third client: curl over MPTCP, when this host has a curl that can speak it.</summary>
internal static class DemoCurlClient
{
    /// <summary>Also streams with curl when it can speak MPTCP: <c>curl --mptcp</c> (8.9+) or <c>mptcpize run curl</c>.</summary>
    public static ChildProcess? Start(LabTopology lab, DemoSettings settings, DemoNarration output)
    {
        if (!settings.Curl)
        {
            return null;
        }

        bool native = CommandRunner.TryRun("curl", ["--help", "all"]).Output.Contains("--mptcp", StringComparison.Ordinal);
        bool mptcpize = !native && CommandRunner.IsOnPath("mptcpize");
        if (!native && !mptcpize)
        {
            output.Line("  (curl with MPTCP not available: curl 8.9+ or the mptcpize package; skipping the curl client)");
            return null;
        }

        string url = string.Create(CultureInfo.InvariantCulture, $"http://{lab.Plan.Anycast4}:{PopServer.Port}/stream?seconds={settings.Seconds}&rate={settings.Rate}");
        string[] curlArgs = ["-s", "-o", "/dev/null", "-w", "%{size_download} %{http_code}", "--max-time", ((int)settings.Seconds + 15).ToString(CultureInfo.InvariantCulture), url];
        string[] command = native ? ["curl", "--mptcp", .. curlArgs] : ["mptcpize", "run", "curl", .. curlArgs];
        output.Line($"  also: {string.Join(' ', command)}");
        return lab.Client.Start(command);
    }

    public static async Task<(bool Ok, string Received)> FinishAsync(ChildProcess curl, DemoSettings settings, CancellationToken token)
    {
        if (!await curl.WaitForExitAsync(TimeSpan.FromSeconds(settings.Seconds + 20), token).ConfigureAwait(false))
        {
            curl.Kill();
            return (false, "timed out");
        }

        string text = curl.Output.Trim();
        string[] parts = text.Split(' ');
        long expected = (long)(settings.Seconds * settings.Rate);
        bool ok = curl.ExitCode == 0 && parts.Length == 2 && parts[1] == "200" && long.TryParse(parts[0], CultureInfo.InvariantCulture, out long size) && size == expected;
        long got = parts.Length > 0 && long.TryParse(parts[0], CultureInfo.InvariantCulture, out long g) ? g : 0;
        return (ok, $"{got / 1024} / {expected / 1024} KiB");
    }
}
