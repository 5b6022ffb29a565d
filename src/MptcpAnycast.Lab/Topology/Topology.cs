namespace MptcpAnycast.Lab;

/// <summary>
/// Namespaces made together by a <see cref="TopologyBuilder"/> and removed together: disposing deletes every one of
/// them (with the processes inside).
/// </summary>
public class Topology : IDisposable
{
    protected Topology(string prefix, IReadOnlyList<LabNamespace> namespaces)
    {
        Prefix = prefix;
        Namespaces = namespaces;
    }

    /// <summary>Every namespace is named <c>PREFIX-ROLE</c>.</summary>
    public string Prefix { get; }

    public IReadOnlyList<LabNamespace> Namespaces { get; }

    public static string NamespaceName(string prefix, string role) => $"{prefix}-{role}";

    /// <summary>The preset of one namespace (<c>PREFIX-ROLE</c>, default prefix from <see cref="LabPrefix.New"/>): for a test that needs a host of its own.</summary>
    public static LabNamespace Single(string role, string? prefix = null)
    {
        using var builder = new TopologyBuilder(prefix ?? LabPrefix.New());
        LabNamespace ns = builder.Add(role);
        builder.Build();
        return ns;
    }

    /// <summary>Namespaces (from <c>ip netns list</c>) whose name starts with <c>PREFIX-</c>.</summary>
    public static IReadOnlyList<string> Existing(string prefix) =>
        LabNamespace.List().Where(name => name.StartsWith(prefix + "-", StringComparison.Ordinal)).ToArray();

    /// <summary>
    /// Removes every namespace whose name starts with <c>PREFIX-</c> (ending the processes still inside it). Safe to run
    /// twice and after a crash. Returns the namespaces it deleted.
    /// </summary>
    public static IReadOnlyList<string> Remove(string prefix) =>
        LabNamespace.DeleteAll(Existing(prefix).Select(name => new LabNamespace(name)));

    /// <summary>Deletes every namespace of the topology.</summary>
    public virtual void Dispose()
    {
        LabNamespace.DeleteAll(Namespaces);
        GC.SuppressFinalize(this);
    }
}
