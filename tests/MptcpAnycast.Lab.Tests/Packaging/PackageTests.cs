using System.Diagnostics;
using System.IO.Compression;
using System.Reflection.Metadata;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using MptcpAnycast.Lab.Tests.Infrastructure;
using MptcpAnycast.Lab.Tests.Lab;

namespace MptcpAnycast.Lab.Tests.Packaging;

/// <summary>
/// The packages as a user meets them: what each one carries, the tool installed from them into a tool path of its own
/// (its version, its host check, the lab demo run from a folder with no checkout), and a web app built against the
/// Kestrel package alone. Serialised with the other lab tests: the builds and the demo are heavy.
/// </summary>
[Collection(AnycastLabCollection.Name)]
public sealed class PackageTests(PackageFeed feed) : IClassFixture<PackageFeed>
{
    private const string RepositoryUrl = "https://github.com/mptcp-anycast/mptcp-anycast";

    private static readonly TimeSpan ToolTimeout = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan ConsumerBuildTimeout = TimeSpan.FromMinutes(5);
    private static readonly TimeSpan DemoTimeout = TimeSpan.FromMinutes(3);

    // An MSBuild diagnostic line ("FILE(1,2): warning CODE: ...", "TASK : warning : ..."), not the "0 Warning(s)" summary.
    private static readonly Regex s_warning = new(@":\s*warning\b", RegexOptions.IgnoreCase);

    // The Source Link entry of a portable pdb (the format's registered kind).
    private static readonly Guid s_sourceLinkKind = new("CC110556-A091-4D38-9FEC-25AB9A351A6A");

    [Fact]
    public void Pack_of_the_solution_prints_no_warning_and_makes_exactly_the_three_packages_and_their_symbols()
    {
        Assert.DoesNotMatch(s_warning, feed.PackOutput);

        string[] expected = [.. PackageFeed.PackageIds.SelectMany(id => new[] { $"{id}.{PackageFeed.Version}.nupkg", $"{id}.{PackageFeed.Version}.snupkg" }).Order(StringComparer.Ordinal)];
        string[] made = [.. Directory.GetFiles(feed.FeedDirectory).Select(Path.GetFileName).Order(StringComparer.Ordinal)!];
        Assert.Equal(expected, made);
    }

    [Theory]
    [InlineData("MptcpAnycast", "lib/net10.0/MptcpAnycast")]
    [InlineData("MptcpAnycast.Kestrel", "lib/net10.0/MptcpAnycast.Kestrel")]
    [InlineData("mptcp-anycast", "tools/net10.0/any/mptcp-anycast")]
    public void Each_package_has_its_readme_tags_repository_and_a_symbols_package_with_source_link(string id, string assembly)
    {
        using ZipArchive package = ZipFile.OpenRead(Path.Combine(feed.FeedDirectory, $"{id}.{PackageFeed.Version}.nupkg"));
        Assert.NotNull(package.GetEntry($"{assembly}.dll"));
        XElement metadata = Nuspec(package, id);
        string Field(string name) => metadata.Elements().SingleOrDefault(e => e.Name.LocalName == name)?.Value ?? "";

        Assert.Equal(PackageFeed.Version, Field("version"));
        Assert.Equal("MIT", Field("license"));
        Assert.False(string.IsNullOrWhiteSpace(Field("description")), $"{id} has no description");
        Assert.Contains("mptcp", Field("tags").Split(' '));
        Assert.Equal(RepositoryUrl, Field("projectUrl"));

        Assert.Equal("README.md", Field("readme"));
        string readme = Read(package.GetEntry("README.md") ?? throw new InvalidOperationException($"{id} packs no README.md"));
        Assert.StartsWith($"# {id}", readme);
        Assert.Contains($"--version {PackageFeed.Version}", readme); // its install line names this version

        XElement repository = metadata.Elements().Single(e => e.Name.LocalName == "repository");
        Assert.Equal("git", (string?)repository.Attribute("type"));
        Assert.Equal(RepositoryUrl, (string?)repository.Attribute("url"));
        Assert.Matches("^[0-9a-f]{40}$", (string?)repository.Attribute("commit") ?? "");

        using ZipArchive symbols = ZipFile.OpenRead(Path.Combine(feed.FeedDirectory, $"{id}.{PackageFeed.Version}.snupkg"));
        ZipArchiveEntry pdb = symbols.GetEntry($"{assembly}.pdb") ?? throw new InvalidOperationException($"{id}'s symbols package has no {assembly}.pdb");
        using JsonDocument sourceLink = JsonDocument.Parse(SourceLink(pdb));
        string target = Assert.Single(sourceLink.RootElement.GetProperty("documents").EnumerateObject()).Value.GetString() ?? "";
        Assert.Matches(@"^https://raw\.githubusercontent\.com/[^/]+/[^/]+/[0-9a-f]{40}/\*$", target);
    }

    [Fact]
    public void The_readme_installs_the_packages_and_the_tool_at_this_version()
    {
        string readme = File.ReadAllText(Path.Combine(PackageFeed.RepositoryRoot(), "README.md"));

        Assert.Contains($"dotnet add package MptcpAnycast.Kestrel --version {PackageFeed.Version}", readme);
        Assert.Contains($"dotnet tool install -g mptcp-anycast --version {PackageFeed.Version}", readme);
    }

    [Fact]
    public void Installed_tool_prints_the_package_version()
    {
        PackageFeed.Result version = feed.Run(feed.Tool, ["--version"], feed.NewFolder("version"), ToolTimeout);

        Assert.True(version.ExitCode == 0, version.Output);
        string first = version.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault() ?? "";
        Assert.Matches($@"^{Regex.Escape(PackageFeed.Version)}(\+[0-9a-f]+)?$", first);
    }

    [Fact]
    public void Installed_tool_check_json_prints_one_json_object()
    {
        PackageFeed.Result check = feed.Run(feed.Tool, ["check", "--json"], feed.NewFolder("check"), ToolTimeout);

        Assert.True(check.ExitCode is 0 or 1, check.Output); // ready or not: this host decides, the output's shape does not
        using JsonDocument report = JsonDocument.Parse(check.StandardOutput);
        Assert.Equal(JsonValueKind.Object, report.RootElement.ValueKind);
        Assert.NotEmpty(report.RootElement.EnumerateObject());
    }

    [Fact]
    public void A_web_app_builds_against_the_Kestrel_package_from_the_feed()
    {
        string app = feed.NewFolder("consumer");
        File.WriteAllText(Path.Combine(app, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <add key="mptcp-anycast-local" value="{feed.FeedDirectory}" />
              </packageSources>
            </configuration>
            """);
        File.WriteAllText(Path.Combine(app, "Consumer.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk.Web">
              <PropertyGroup>
                <TargetFramework>net10.0</TargetFramework>
                <Nullable>enable</Nullable>
                <ImplicitUsings>enable</ImplicitUsings>
                <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
                <NuGetAudit>false</NuGetAudit>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="MptcpAnycast.Kestrel" Version="{PackageFeed.Version}" />
              </ItemGroup>
            </Project>
            """);
        File.WriteAllText(Path.Combine(app, "Program.cs"), """
            using MptcpAnycast;
            using MptcpAnycast.Kestrel;

            WebApplicationBuilder builder = WebApplication.CreateBuilder(args);
            builder.WebHost.UseMptcpAnycast();
            WebApplication web = builder.Build();
            web.MapGet("/mptcp", (HttpContext context) =>
            {
                IMptcpConnectionFeature? feature = context.Features.Get<IMptcpConnectionFeature>();
                IReadOnlyList<MptcpSubflow> subflows = feature?.GetSubflows() ?? [];
                return $"{feature?.State} {subflows.Count}";
            });
            web.Run();
            """);

        PackageFeed.Result build = feed.Run("dotnet", ["build", "-c", "Release", "-nodeReuse:false", "-p:UseSharedCompilation=false"], app, ConsumerBuildTimeout);

        Assert.True(build.ExitCode == 0, build.Output);
        Assert.DoesNotMatch(s_warning, build.Output);
        string output = Path.Combine(app, "bin", "Release", "net10.0");
        foreach (string assembly in (string[])["MptcpAnycast.Kestrel.dll", "MptcpAnycast.dll"])
        {
            string path = Path.Combine(output, assembly);
            Assert.True(File.Exists(path), $"the app's build has no {assembly}");
            Assert.StartsWith(PackageFeed.Version, FileVersionInfo.GetVersionInfo(path).ProductVersion ?? "");
        }
    }

    // The main job from the installed tool alone: its POP servers are the installed tool itself (TOOL lab serve).
    [LabFact]
    public void Installed_tool_runs_the_lab_demo_from_a_folder_with_no_checkout_and_both_clients_survive()
    {
        string prefix = LabPrefix.New("pack");
        try
        {
            PackageFeed.Result demo = feed.Run(feed.Tool, ["lab", "demo", "--prefix", prefix, "--seconds", "4"], feed.NewFolder("demo"), DemoTimeout);

            Assert.True(demo.ExitCode == 0, demo.Output);
            Assert.Contains($"{feed.Tool} lab serve", demo.Output);
            Assert.Matches(@"MPTCP \(\.NET\) .* SURVIVED", demo.Output);
            Assert.Matches(@"TCP \(\.NET\) .* SURVIVED \(rescued", demo.Output);
            Assert.Empty(Topology.Existing(prefix));
        }
        finally
        {
            LabTopology.Down(prefix);
        }
    }

    private static XElement Nuspec(ZipArchive package, string id)
    {
        ZipArchiveEntry entry = package.GetEntry($"{id}.nuspec") ?? throw new InvalidOperationException($"{id} has no nuspec");
        XElement root = XElement.Parse(Read(entry));
        return root.Elements().Single(e => e.Name.LocalName == "metadata");
    }

    private static string Read(ZipArchiveEntry entry)
    {
        using var reader = new StreamReader(entry.Open(), Encoding.UTF8);
        return reader.ReadToEnd();
    }

    private static string SourceLink(ZipArchiveEntry pdbEntry)
    {
        var pdb = new MemoryStream();
        using (Stream stream = pdbEntry.Open())
        {
            stream.CopyTo(pdb);
        }

        pdb.Position = 0;
        using MetadataReaderProvider provider = MetadataReaderProvider.FromPortablePdbStream(pdb);
        MetadataReader reader = provider.GetMetadataReader();
        foreach (CustomDebugInformationHandle handle in reader.CustomDebugInformation)
        {
            CustomDebugInformation info = reader.GetCustomDebugInformation(handle);
            if (reader.GetGuid(info.Kind) == s_sourceLinkKind)
            {
                return Encoding.UTF8.GetString(reader.GetBlobBytes(info.Value));
            }
        }

        throw new InvalidOperationException($"{pdbEntry.FullName} has no Source Link");
    }
}
