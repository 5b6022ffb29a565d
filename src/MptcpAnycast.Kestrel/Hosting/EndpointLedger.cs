using System.Globalization;
using System.Net;
using System.Text;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Kestrel.Hosting;

/// <summary>
/// Records the kernel endpoints this process created, in <c>/run/mptcp-anycast</c>, so that a later start can remove
/// what a crashed process left behind. One file per process and network namespace:
/// <c>endpoints-&lt;netns inode&gt;-&lt;pid&gt;</c>, one line per endpoint: <c>id address port</c>. <c>/run</c> is a tmpfs,
/// cleared at boot, like the endpoints themselves.
/// </summary>
internal sealed class EndpointLedger
{
    private readonly string _directory;
    private readonly string _namespaceId;

    public EndpointLedger(string directory = "/run/mptcp-anycast", string? namespaceId = null)
    {
        _directory = directory;
        _namespaceId = namespaceId ?? CurrentNamespaceId();
    }

    private string FileFor(int pid) => Path.Combine(_directory, $"endpoints-{_namespaceId}-{pid.ToString(CultureInfo.InvariantCulture)}");

    /// <summary>Writes this process's list (replacing it). Returns an error text, or null.</summary>
    public string? Record(IReadOnlyList<MptcpEndpoint> endpoints, int pid)
    {
        try
        {
            Directory.CreateDirectory(_directory);
            if (endpoints.Count == 0)
            {
                File.Delete(FileFor(pid));
                return null;
            }

            var text = new StringBuilder();
            foreach (MptcpEndpoint e in endpoints)
            {
                text.Append(CultureInfo.InvariantCulture, $"{e.Id} {e.Address} {e.Port}\n");
            }

            File.WriteAllText(FileFor(pid), text.ToString());
            return null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return ex.Message;
        }
    }

    /// <summary>Endpoints recorded by processes of this namespace that no longer run, with the files that listed them.</summary>
    public IReadOnlyList<(int Pid, string File, IReadOnlyList<MptcpEndpoint> Endpoints)> FindLeftovers(Func<int, bool>? isAlive = null)
    {
        isAlive ??= static pid => Directory.Exists($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}");
        var result = new List<(int, string, IReadOnlyList<MptcpEndpoint>)>();
        if (!Directory.Exists(_directory))
        {
            return result;
        }

        string prefix = $"endpoints-{_namespaceId}-";
        foreach (string file in Directory.EnumerateFiles(_directory, prefix + "*"))
        {
            if (!int.TryParse(Path.GetFileName(file).AsSpan(prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out int pid) || isAlive(pid))
            {
                continue;
            }

            result.Add((pid, file, Parse(SafeRead(file))));
        }

        return result;
    }

    public static void Forget(string file)
    {
        try
        {
            File.Delete(file);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }
    }

    /// <summary>Parses the file; lines that do not parse are skipped (a half-written file from a crash).</summary>
    internal static IReadOnlyList<MptcpEndpoint> Parse(string text)
    {
        var endpoints = new List<MptcpEndpoint>();
        foreach (string line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string[] parts = line.Split(' ');
            if (parts.Length == 3
                && byte.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out byte id) && id != 0
                && IPAddress.TryParse(parts[1], out IPAddress? address)
                && int.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out int port) && port <= 65535)
            {
                endpoints.Add(new MptcpEndpoint(id, address, port, MptcpEndpointFlags.Signal, 0));
            }
        }

        return endpoints;
    }

    private static string SafeRead(string file)
    {
        try
        {
            return File.ReadAllText(file);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return "";
        }
    }

    /// <summary>The calling thread's network namespace by its inode (<c>net:[4026531840]</c> gives <c>4026531840</c>), or <c>unknown</c>.</summary>
    internal static string CurrentNamespaceId()
    {
        using NetworkNamespace current = NetworkNamespace.OfCurrentThread();
        string id = current.Id;
        int open = id.IndexOf('[', StringComparison.Ordinal);
        int close = id.IndexOf(']', StringComparison.Ordinal);
        return open >= 0 && close > open ? id[(open + 1)..close] : "unknown";
    }
}
