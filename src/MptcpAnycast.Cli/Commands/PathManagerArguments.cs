using System.Globalization;
using System.Net;
using MptcpAnycast.Cli.CommandLine;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Cli.Commands;

/// <summary>Parsing and printing shared by the path-manager commands.</summary>
internal static class PathManagerArguments
{
    /// <summary>How long a command may wait for the kernel before it gives up.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    public static uint Token(ArgumentReader reader)
    {
        string text = reader.Required("--token");
        string digits = text.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? text[2..] : text;
        return uint.TryParse(digits, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out uint token) && digits.Length <= 8
            ? token
            : throw new UsageException($"option '--token' must be a connection token in hex, up to 8 digits (got '{text}')");
    }

    public static IPAddress Address(string name, string text) => IPAddress.TryParse(text, out IPAddress? address)
        ? address
        : throw new UsageException($"{name} must be an IPv4 or IPv6 address (got '{text}')");

    public static MptcpEndpointFlags Flags(string? text)
    {
        var flags = MptcpEndpointFlags.None;
        if (string.IsNullOrEmpty(text))
        {
            return flags;
        }

        foreach (string word in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            flags |= word switch
            {
                "signal" => MptcpEndpointFlags.Signal,
                "subflow" => MptcpEndpointFlags.Subflow,
                "backup" => MptcpEndpointFlags.Backup,
                "fullmesh" => MptcpEndpointFlags.Fullmesh,
                "laminar" => MptcpEndpointFlags.Laminar,
                _ => throw new UsageException($"option '--flags' takes signal,subflow,backup,fullmesh,laminar (got '{word}')"),
            };
        }

        return flags;
    }

    public static IEnumerable<string> FlagNames(MptcpEndpointFlags flags) =>
        Enum.GetValues<MptcpEndpointFlags>().Where(f => f != 0 && flags.HasFlag(f)).Select(f => f.ToString().ToLowerInvariant());

    /// <summary>Opens a client in this process's namespace, bounded by <see cref="Timeout"/>.</summary>
    public static Task<PathManagerClient> OpenAsync() => PathManagerClient.OpenAsync(new PathManagerClientOptions { CommandTimeout = Timeout });
}
