using System.Collections.Concurrent;

namespace MptcpAnycast.Kestrel.Connections;

/// <summary>
/// The MPTCP connections whose unicast subflow can still change, by token: the control loop adds them when it
/// announces, the event thread looks them up. Only this transport's own connections are here, so other processes'
/// MPTCP connections in the namespace are never touched.
/// </summary>
internal sealed class ConnectionRegistry
{
    private readonly ConcurrentDictionary<uint, TrackedConnection> _byToken = new();

    /// <summary>Connections tracked now.</summary>
    public int Count => _byToken.Count;

    public IEnumerable<TrackedConnection> All => _byToken.Values;

    /// <summary>Tracks <paramref name="connection"/> (a later connection that drew the same token replaces an earlier one).</summary>
    public void Add(TrackedConnection connection) => _byToken[connection.Token] = connection;

    public bool TryGet(uint token, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out TrackedConnection? connection) =>
        _byToken.TryGetValue(token, out connection);

    /// <summary>Forgets <paramref name="connection"/>, unless its token now belongs to another one.</summary>
    public void Remove(TrackedConnection connection) =>
        _byToken.TryRemove(new KeyValuePair<uint, TrackedConnection>(connection.Token, connection));
}
