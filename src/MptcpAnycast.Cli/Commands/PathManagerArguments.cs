using System.CommandLine;
using System.Globalization;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Cli.Commands;

/// <summary>Options and printing shared by the path-manager commands.</summary>
internal static class PathManagerArguments
{
    /// <summary>How long a command may wait for the kernel before it gives up.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    /// <summary>The flags <c>endpoints add --flags</c> takes, as <c>ip mptcp endpoint</c> spells them (implicit is the kernel's own).</summary>
    public const string SettableFlags = "signal,subflow,backup,fullmesh,laminar";

    /// <summary><c>--token HEX</c>: a connection's token, as <c>monitor</c> prints it.</summary>
    public static Option<uint?> Token() => new("--token")
    {
        Description = "The connection's token in hex, up to 8 digits (0x optional), as monitor prints it.",
        HelpName = "hex",
        Required = true,
        CustomParser = result =>
        {
            string text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
            string digits = text.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? text[2..] : text;
            if (digits.Length <= 8 && uint.TryParse(digits, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out uint token))
            {
                return token;
            }

            result.AddError($"option '--token' must be a connection token in hex, up to 8 digits (got '{text}')");
            return null;
        },
    };

    /// <summary><c>--flags signal,subflow,...</c>: an endpoint's flags, comma-separated.</summary>
    public static Option<MptcpEndpointFlags?> Flags() => new("--flags")
    {
        Description = "What the kernel does with the address, comma-separated: signal (announce it with ADD_ADDR), subflow (open " +
            "subflows from it), backup (its subflows are backup), fullmesh (a subflow to every announced address), laminar " +
            $"(Linux 6.18+). {CommandLine.ToolOptions.DefaultText("none")}",
        HelpName = SettableFlags.Replace(',', '|'),
        CustomParser = result =>
        {
            var flags = MptcpEndpointFlags.None;
            string text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
            string[] words = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (words.Length == 0)
            {
                // An empty list is most likely an unset shell variable; an endpoint without flags is one without --flags.
                result.AddError($"option '--flags' needs one or more of {SettableFlags}, comma-separated (got '{text}'); leave it out for none");
                return null;
            }

            foreach (string word in words)
            {
                MptcpEndpointFlags? flag = word.ToLowerInvariant() switch
                {
                    "signal" => MptcpEndpointFlags.Signal,
                    "subflow" => MptcpEndpointFlags.Subflow,
                    "backup" => MptcpEndpointFlags.Backup,
                    "fullmesh" => MptcpEndpointFlags.Fullmesh,
                    "laminar" => MptcpEndpointFlags.Laminar,
                    _ => null,
                };
                if (flag is null)
                {
                    result.AddError($"option '--flags' takes {SettableFlags} (got '{word}')");
                    return null;
                }

                flags |= flag.Value;
            }

            return flags;
        },
    };

    public static IEnumerable<string> FlagNames(MptcpEndpointFlags flags) =>
        Enum.GetValues<MptcpEndpointFlags>().Where(f => f != 0 && flags.HasFlag(f)).Select(f => f.ToString().ToLowerInvariant());

    /// <summary>
    /// How the commands open their client: in this process's namespace, bounded by <see cref="Timeout"/>. The tool's
    /// tests, which run it as root in the test host's namespace, open it in a namespace of its own instead, so that a
    /// command line a regression lets through changes no endpoint or limit of the host.
    /// </summary>
    internal static Func<Task<PathManagerClient>> Opener { get; set; } =
        () => PathManagerClient.OpenAsync(new PathManagerClientOptions { CommandTimeout = Timeout });

    /// <summary>Opens the client the path-manager commands use (<see cref="Opener"/>).</summary>
    public static Task<PathManagerClient> OpenAsync() => Opener();
}
