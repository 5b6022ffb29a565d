using System.Buffers.Binary;
using System.Text.Json;

namespace MptcpAnycast.Lab.Tests.Lab;

/// <summary>The demo's plot and its diagnosis of a failed case, from made-up runs: no lab, no root.</summary>
public sealed class DemoPlotTests
{
    public static readonly byte[] PngSignature = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0d, 0x0a, 0x1a, 0x0a];

    /// <summary>Width and height from a PNG's IHDR chunk (right after the signature and the chunk's length and type).</summary>
    public static (int Width, int Height) PngSize(byte[] png) =>
        (BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(16)), BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(20)));

    private static DemoRecord Run()
    {
        const long Rate = 128 * 1024;
        var mptcp = new List<DemoSample>();
        var tcp = new List<DemoSample>();
        for (int tenth = 0; tenth <= 100; tenth++)
        {
            double s = tenth / 10.0;
            mptcp.Add(new DemoSample(s, (long)(s * Rate)));
            tcp.Add(new DemoSample(s, (long)(Math.Min(s, 4) * Rate)));
        }

        return new DemoRecord("userspace path manager, client accept-add-addr, unicast own, no rescue",
            "The MPTCP connection survived the anycast route change; the plain TCP one did not.", 4.0, LabPopId.B, 10 * Rate,
            [new DemoClientRecord("MPTCP (.NET)", mptcp, null, "SURVIVED"), new DemoClientRecord("TCP (.NET)", tcp, 9.1, "DIED: hung: no data for 5 s")]);
    }

    [Fact]
    public void A_png_plot_has_the_size_it_says()
    {
        string path = Path.Combine(Path.GetTempPath(), $"demo-plot-{Guid.NewGuid():n}.PNG");
        try
        {
            DemoPlot.Write(path, Run());
            byte[] png = File.ReadAllBytes(path);
            Assert.Equal(PngSignature, png[..8]);
            Assert.Equal((DemoPlot.Width, DemoPlot.Height), PngSize(png));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [FontFact]
    public void An_svg_plot_names_the_case_the_outcome_the_flip_and_each_client_with_its_result()
    {
        string path = Path.Combine(Path.GetTempPath(), $"demo-plot-{Guid.NewGuid():n}.svg");
        try
        {
            DemoPlot.Write(path, Run());
            string svg = File.ReadAllText(path);
            Assert.StartsWith("<?xml", svg);
            // Skia writes each text as one <text> element with its characters in order.
            string text = string.Concat(System.Text.RegularExpressions.Regex.Matches(svg, "<text[^>]*>([^<]*)</text>").Select(m => m.Groups[1].Value + "\n"));
            Assert.Contains("lab demo: userspace path manager, client accept-add-addr, unicast own, no rescue", text);
            Assert.Contains("The MPTCP connection survived the anycast route change; the plain TCP one did not.", text);
            Assert.Contains("flip at 4.0 s: the anycast route moves to POP B", text);
            Assert.Contains("MPTCP (.NET): SURVIVED", text);
            Assert.Contains("TCP (.NET): DIED: hung: no data for 5 s", text);
            Assert.Contains("the whole stream: 1280 KiB", text);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData("demo.jpg", "must end in .png or .svg (got 'demo.jpg')")]
    [InlineData("demo", "must end in .png or .svg (got 'demo')")]
    [InlineData("/nonexistent-folder-for-the-demo/demo.png", "folder /nonexistent-folder-for-the-demo does not exist (got '/nonexistent-folder-for-the-demo/demo.png')")]
    public void A_bad_plot_path_is_refused_with_a_message_that_names_it(string path, string expected)
    {
        Assert.Contains(expected, DemoPlot.ValidatePath(path));
        ArgumentException refused = Assert.Throws<ArgumentException>(() => DemoPlot.Write(path, Run()));
        Assert.Contains(expected, refused.Message);
    }

    [Theory]
    [InlineData("demo.png")]
    [InlineData("demo.SVG")]
    public void A_png_or_svg_path_in_an_existing_folder_is_taken(string name) =>
        Assert.Null(DemoPlot.ValidatePath(Path.Combine(Path.GetTempPath(), name)));

    private static JsonElement Server(string json) => JsonDocument.Parse(json).RootElement;

    [Fact]
    public void Default_client_limits_are_named_as_the_reason_with_the_ip_mptcp_fix()
    {
        DemoDiagnosis why = DemoDiagnosis.ForMptcp(new LabOptions { Client = LabClientLimits.Defaults },
            Server("""{"mptcp":true,"state":"JoinTimedOut","stateReason":"no join within 00:00:02","announced":"198.51.100.2:8080"}"""),
            "hung: no data for 5 s", new DemoDiagnosis.ClientEvidence(AddAddrAccepted: 0, AddAddrReceived: 1, JoinSynSent: 0, JoinSynAckReceived: 0));

        Assert.Contains("announced 198.51.100.2:8080 (ADD_ADDR)", why.Reason);
        Assert.Contains("(JoinTimedOut)", why.Reason);
        Assert.Contains("received 1 ADD_ADDR but its MPTCP limits (add_addr_accepted 0) drop it", why.Reason);
        Assert.Contains("hung: no data for 5 s", why.Reason);
        Assert.StartsWith("on the client: ip mptcp limits set add_addr_accepted 1 subflows 1", why.Fix);
    }

    [Fact]
    public void Join_syns_without_an_answer_are_named_as_a_firewall()
    {
        DemoDiagnosis why = DemoDiagnosis.ForMptcp(new LabOptions { Firewall = true },
            Server("""{"mptcp":true,"state":"JoinTimedOut","stateReason":"no join","announced":"198.51.100.2:8080"}"""),
            null, new DemoDiagnosis.ClientEvidence(AddAddrAccepted: 1, AddAddrReceived: 1, JoinSynSent: 3, JoinSynAckReceived: 0));

        Assert.Contains("3 MP_JOIN SYN(s) sent", why.Reason);
        Assert.Contains("drops TCP to the POP's unicast address", why.Reason);
        Assert.Contains($"port {PopServer.Port}", why.Fix);
        Assert.Contains("without --firewall", why.Fix);
    }

    [Fact]
    public void A_fallback_to_tcp_is_named_with_its_reason()
    {
        DemoDiagnosis why = DemoDiagnosis.ForMptcp(new LabOptions { StripMptcp = true },
            Server("""{"mptcp":false,"fallbackReason":"FellBackToTcp","state":"NotAnnounced","stateReason":"plain TCP"}"""),
            "ConnectionReset: Connection reset by peer", new DemoDiagnosis.ClientEvidence(1, 0, 0, 0));

        Assert.Contains("fell back to plain TCP (server: mptcp false, FellBackToTcp)", why.Reason);
        Assert.Contains("strips TCP option 30", why.Reason);
        Assert.Contains("without --strip-mptcp", why.Fix);
    }

    [Theory]
    [InlineData("add_addr_accepted 0 subflows 2\n", "add_addr_accepted", 0)]
    [InlineData("add_addr_accepted 1 subflows 1\n", "subflows", 1)]
    [InlineData("subflows 2\n", "add_addr_accepted", null)]
    [InlineData("add_addr_accepted\n", "add_addr_accepted", null)]
    public void The_client_limits_are_read_from_ip_mptcp_limits_show(string output, string name, int? expected) =>
        Assert.Equal(expected, DemoDiagnosis.ClientEvidence.ParseLimit(output, name));
}

/// <summary>A test of the plot's text: skipped, with the reason, on a machine without fonts (the text is then not drawn).</summary>
public sealed class FontFactAttribute : FactAttribute
{
    public FontFactAttribute()
    {
        if (!DemoPlot.HasFonts)
        {
            Skip = "no font on this machine, so the plot's text is not drawn (apt-get install fonts-dejavu-core)";
        }
    }
}
