namespace MptcpAnycast.Lab;

/// <summary>
/// Builds a topology: namespaces named <c>PREFIX-ROLE</c> and the veth links between them, made directly inside the
/// namespaces (nothing appears in the root namespace, even for a moment). Disposing a builder that was not
/// <see cref="Build"/>-ed deletes everything it made, so a preset that fails half-way leaves nothing behind:
/// <code>
/// using var builder = new TopologyBuilder(prefix);
/// LabNamespace client = builder.Add("client"), server = builder.Add("server");
/// builder.Link(client, "to-server", server, "to-client");
/// ...                                    // addresses, routes, sysctls through the namespaces
/// IReadOnlyList&lt;LabNamespace&gt; made = builder.Build();
/// </code>
/// The presets: <see cref="LabTopology.Up"/> (client, router, POP A and POP B), <see cref="SinglePopTopology.Create"/>
/// (a client and one POP on one link), <see cref="PathManagerPairTopology.Create"/> (two namespaces for path-manager
/// tests) and <see cref="Topology.Single"/> (one namespace).
/// </summary>
public sealed class TopologyBuilder : IDisposable
{
    private readonly List<LabNamespace> _made = [];
    private bool _built;

    /// <summary>Starts a topology whose namespaces are named <c>PREFIX-ROLE</c>; refuses a prefix that has namespaces already.</summary>
    public TopologyBuilder(string prefix)
    {
        if (LabOptions.ValidatePrefix(prefix) is string problem)
        {
            throw new ArgumentException(problem, nameof(prefix));
        }

        if (Topology.Existing(prefix).Count > 0)
        {
            throw new InvalidOperationException($"a lab with prefix '{prefix}' exists; run 'mptcp-anycast lab down --prefix {prefix}' first");
        }

        Prefix = prefix;
    }

    public string Prefix { get; }

    /// <summary>Makes namespace <c>PREFIX-ROLE</c> (<see cref="LabNamespace.Create"/>: <c>lo</c> up, no IPv6 duplicate address detection).</summary>
    public LabNamespace Add(string role)
    {
        ObjectDisposedException.ThrowIf(_built, this);
        var ns = new LabNamespace(Topology.NamespaceName(Prefix, role));
        _made.Add(ns); // before it exists: a half-made namespace is removed too
        LabNamespace.Create(ns.Name);
        return ns;
    }

    /// <summary>A veth pair: <paramref name="name"/> in <paramref name="ns"/>, <paramref name="peerName"/> in <paramref name="peer"/>, both up.</summary>
    public void Link(LabNamespace ns, string name, LabNamespace peer, string peerName)
    {
        ArgumentNullException.ThrowIfNull(ns);
        ArgumentNullException.ThrowIfNull(peer);
        ns.Ip("link", "add", name, "type", "veth", "peer", "name", peerName, "netns", peer.Name);
        ns.Ip("link", "set", name, "up");
        peer.Ip("link", "set", peerName, "up");
    }

    /// <summary>Ends the building: the namespaces now belong to the caller. Returns them in the order they were made.</summary>
    public IReadOnlyList<LabNamespace> Build()
    {
        _built = true;
        return [.. _made];
    }

    /// <summary>Deletes what was made, unless <see cref="Build"/> was called.</summary>
    public void Dispose()
    {
        if (!_built)
        {
            _built = true;
            _made.ForEach(ns => ns.Delete());
        }
    }
}
