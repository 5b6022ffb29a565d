using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;

namespace MptcpAnycast.Lab;

/// <summary>
/// The rescue agent in the POPs of an anycast lab: one <c>mptcp-anycast rescue run</c> process per POP, each with a
/// configuration that names the other POPs as peers (one random key per lab), its status file and log in
/// <see cref="DirectoryOf"/>. Started either owned by this process (tests, <c>lab demo</c>: disposing stops them) or
/// detached (<c>lab up --rescue</c>: they run until <c>lab down</c> deletes the namespaces).
/// </summary>
public sealed class LabRescue : IDisposable
{
    /// <summary>How long an agent may take to start (a cold <c>dotnet</c> on a busy 2-core machine takes seconds).</summary>
    public static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);

    private readonly Dictionary<LabPopId, ChildProcess> _owned;

    private LabRescue(LabTopology lab, Dictionary<LabPopId, ChildProcess> owned)
    {
        Lab = lab;
        _owned = owned;
    }

    public LabTopology Lab { get; }

    /// <summary>Where a lab's rescue configurations, status files and logs are: <c>/run/mptcp-anycast/PREFIX-rescue</c>.</summary>
    public static string DirectoryOf(string prefix) => Path.Combine(LabState.Directory, prefix + "-rescue");

    /// <summary>The status directory the lab's agents write to.</summary>
    public static string StatusDirectoryOf(string prefix) => Path.Combine(DirectoryOf(prefix), "status");

    /// <summary>The agent's name for a POP: <c>pop-a</c>, <c>pop-b</c>, <c>pop-c</c>.</summary>
    public static string AgentName(LabPopId id) => "pop-" + LabNames.Of(id);

    /// <summary>
    /// Writes one configuration per POP of <paramref name="lab"/> (every other POP is a peer) and returns their paths by
    /// POP. <paramref name="extra"/> adds settings to every configuration (for example <c>LookupTimeout</c>).
    /// </summary>
    public static IReadOnlyDictionary<LabPopId, string> WriteConfigurations(LabTopology lab, IReadOnlyDictionary<string, object>? extra = null)
    {
        ArgumentNullException.ThrowIfNull(lab);
        string directory = DirectoryOf(lab.Options.Prefix);
        Directory.CreateDirectory(directory);
        Directory.CreateDirectory(StatusDirectoryOf(lab.Options.Prefix));
        string key = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
        var paths = new Dictionary<LabPopId, string>();
        foreach (LabPop pop in lab.Pops)
        {
            var config = new Dictionary<string, object>
            {
                ["Name"] = AgentName(pop.Id),
                ["Interface"] = pop.Interface,
                ["AnycastAddresses"] = new[] { lab.Plan.Anycast4, lab.Plan.Anycast6 },
                ["UnicastIPv4"] = pop.Address4,
                ["UnicastIPv6"] = pop.Address6,
                ["StatusDirectory"] = StatusDirectoryOf(lab.Options.Prefix),
                ["Peers"] = lab.Pops.Where(p => p.Id != pop.Id).Select(p => new Dictionary<string, string>
                {
                    ["Name"] = AgentName(p.Id),
                    ["UnicastIPv4"] = p.Address4,
                    ["UnicastIPv6"] = p.Address6,
                    ["Key"] = key,
                }).ToArray(),
            };
            foreach ((string name, object value) in extra ?? new Dictionary<string, object>())
            {
                config[name] = value;
            }

            string path = Path.Combine(directory, AgentName(pop.Id) + ".json");
            File.WriteAllText(path, JsonSerializer.Serialize(config, LabRescueJson.Default.DictionaryStringObject));
            paths[pop.Id] = path;
        }

        return paths;
    }

    /// <summary>
    /// The agent's configuration for <paramref name="pop"/> as ASP.NET Core command-line settings
    /// (<c>--MptcpAnycast:Rescue:Name pop-a ...</c>), for a POP server that hosts the agent itself.
    /// </summary>
    public static List<string> HostArguments(LabTopology lab, LabPopId pop)
    {
        ArgumentNullException.ThrowIfNull(lab);
        string path = WriteConfigurations(lab)[pop];
        using JsonDocument document = JsonDocument.Parse(File.ReadAllText(path));
        var args = new List<string>();
        Flatten(document.RootElement, MptcpAnycast.Rescue.RescueOptions.SectionName, args);
        return args;

        static void Flatten(JsonElement element, string key, List<string> args)
        {
            switch (element.ValueKind)
            {
                case JsonValueKind.Object:
                    foreach (JsonProperty property in element.EnumerateObject())
                    {
                        Flatten(property.Value, $"{key}:{property.Name}", args);
                    }

                    break;
                case JsonValueKind.Array:
                    int i = 0;
                    foreach (JsonElement item in element.EnumerateArray())
                    {
                        Flatten(item, $"{key}:{i++}", args);
                    }

                    break;
                default:
                    args.Add("--" + key);
                    args.Add(element.ToString());
                    break;
            }
        }
    }

    /// <summary>
    /// Starts the agent in every POP (or in <paramref name="pops"/>) and returns once each has written its status, or
    /// throws with the output of one that exited or did not start in time (stopping the others).
    /// </summary>
    /// <param name="lab">The lab.</param>
    /// <param name="tool">How to start the tool.</param>
    /// <param name="detached">True: the agents outlive this process, logging to files, until <c>lab down</c>.</param>
    /// <param name="pops">The POPs to start it in; default all.</param>
    /// <param name="extra">Settings added to every configuration.</param>
    /// <param name="wrapper">A command that runs each agent, such as <c>setpriv</c> with its options (the lab's
    /// directories are then opened to every user, so that an unprivileged agent can write its status).</param>
    /// <param name="cancellationToken">Stops the wait.</param>
    public static async Task<LabRescue> StartAsync(LabTopology lab, ToolCommand tool, bool detached = false, IEnumerable<LabPopId>? pops = null,
        IReadOnlyDictionary<string, object>? extra = null, IReadOnlyList<string>? wrapper = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(lab);
        ArgumentNullException.ThrowIfNull(tool);
        IReadOnlyDictionary<LabPopId, string> configs = WriteConfigurations(lab, extra);
        if (wrapper is not null && !OperatingSystem.IsWindows())
        {
            const UnixFileMode Everyone = (UnixFileMode)0x1ff; // rwxrwxrwx: a throw-away lab directory under /run
            File.SetUnixFileMode(DirectoryOf(lab.Options.Prefix), Everyone);
            File.SetUnixFileMode(StatusDirectoryOf(lab.Options.Prefix), Everyone);
        }

        var owned = new Dictionary<LabPopId, ChildProcess>();
        var rescue = new LabRescue(lab, owned);
        try
        {
            foreach (LabPopId id in pops ?? lab.Pops.Select(p => p.Id))
            {
                File.Delete(StatusPathOf(lab.Options.Prefix, id));
                string[] run = ["rescue", "run", "--config", configs[id], "--verbose"];
                if (detached)
                {
                    string log = Path.Combine(DirectoryOf(lab.Options.Prefix), AgentName(id) + ".log");
                    StartDetached(lab.Pop(id).Namespace, tool.With([.. run, "--log", log]));
                }
                else
                {
                    owned[id] = lab.Pop(id).Namespace.Start([.. wrapper ?? [], .. tool.With(run)]);
                }
            }

            foreach (LabPopId id in pops ?? lab.Pops.Select(p => p.Id))
            {
                await rescue.WaitStartedAsync(id, cancellationToken).ConfigureAwait(false);
            }

            return rescue;
        }
        catch
        {
            rescue.Dispose();
            throw;
        }
    }

    /// <summary>The status file of the agent in <paramref name="pop"/>.</summary>
    public static string StatusPathOf(string prefix, LabPopId pop) => Path.Combine(StatusDirectoryOf(prefix), AgentName(pop) + ".json");

    /// <summary>The agent's latest status counters in <paramref name="pop"/>, by name (empty when it wrote none).</summary>
    public IReadOnlyDictionary<string, long> Counters(LabPopId pop)
    {
        string path = StatusPathOf(Lab.Options.Prefix, pop);
        if (!File.Exists(path))
        {
            return new Dictionary<string, long>();
        }

        using JsonDocument document = JsonDocument.Parse(File.ReadAllText(path));
        return document.RootElement.GetProperty("counters").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetInt64());
    }

    /// <summary>The process id of the agent this object started in <paramref name="pop"/> (the wrapper's, which execs it).</summary>
    public int Pid(LabPopId pop) => _owned[pop].Pid;

    /// <summary>The output of the agent this object started in <paramref name="pop"/> (empty for detached ones).</summary>
    public string Output(LabPopId pop) => _owned.TryGetValue(pop, out ChildProcess? process) ? process.Output : "";

    /// <summary>Stops the agent in <paramref name="pop"/> gracefully (SIGTERM): it detaches its program.</summary>
    public bool Stop(LabPopId pop) => !_owned.TryGetValue(pop, out ChildProcess? process) || process.Stop(TimeSpan.FromSeconds(10));

    /// <summary>Kills the agent in <paramref name="pop"/> (SIGKILL: its program stays attached, nobody reads its misses).</summary>
    public void Kill(LabPopId pop)
    {
        if (_owned.TryGetValue(pop, out ChildProcess? process))
        {
            process.Kill();
        }
    }

    /// <summary>Stops the agents this object started (detached ones run until <c>lab down</c>).</summary>
    public void Dispose()
    {
        foreach (ChildProcess process in _owned.Values)
        {
            process.Dispose();
        }

        _owned.Clear();
    }

    private async Task WaitStartedAsync(LabPopId id, CancellationToken cancellationToken)
    {
        string status = StatusPathOf(Lab.Options.Prefix, id);
        var clock = Stopwatch.StartNew();
        while (!File.Exists(status))
        {
            if (_owned.TryGetValue(id, out ChildProcess? process) && process.HasExited)
            {
                throw new InvalidOperationException($"the rescue agent did not start in {Lab.Pop(id).Namespace}:\n{process.Output}");
            }

            if (clock.Elapsed > StartTimeout)
            {
                string log = Path.Combine(DirectoryOf(Lab.Options.Prefix), AgentName(id) + ".log");
                string output = _owned.TryGetValue(id, out ChildProcess? p) ? p.Output : File.Exists(log) ? File.ReadAllText(log) : "(no output)";
                throw new TimeoutException($"the rescue agent in {Lab.Pop(id).Namespace} wrote no status within {StartTimeout.TotalSeconds:0} s:\n{output}");
            }

            await Task.Delay(50, cancellationToken).ConfigureAwait(false);
        }
    }

    private static void StartDetached(LabNamespace ns, string[] command)
    {
        // Its own pipes, not this process's stdout: a detached agent must not hold the caller's terminal or pipe open
        // (it writes to its --log file; the pipes are never read and close with this process).
        var psi = new ProcessStartInfo("ip")
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string word in (string[])["netns", "exec", ns.Name, .. command])
        {
            psi.ArgumentList.Add(word);
        }

        psi.Environment["DOTNET_NOLOGO"] = "1";
        using Process process = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start the rescue agent in {ns}");
    }
}

[System.Text.Json.Serialization.JsonSerializable(typeof(Dictionary<string, object>))]
[System.Text.Json.Serialization.JsonSerializable(typeof(string[]))]
[System.Text.Json.Serialization.JsonSerializable(typeof(Dictionary<string, string>[]))]
[System.Text.Json.Serialization.JsonSerializable(typeof(Dictionary<string, string>))]
[System.Text.Json.Serialization.JsonSerializable(typeof(int))]
[System.Text.Json.Serialization.JsonSerializable(typeof(string))]
internal sealed partial class LabRescueJson : System.Text.Json.Serialization.JsonSerializerContext;
