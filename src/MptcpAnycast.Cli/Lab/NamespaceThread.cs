using MptcpAnycast;

namespace MptcpAnycast.Cli.Lab;

/// <summary>
/// Runs code on a fresh thread that has entered a named network namespace (<c>setns</c> on
/// <c>/var/run/netns/NAME</c>). Sockets created there belong to that namespace for their whole life, whichever
/// thread uses them later; so a server or client socket for the lab can be made here and then used with async I/O.
/// </summary>
internal static class NamespaceThread
{
    /// <summary>Runs <paramref name="action"/> synchronously inside namespace <paramref name="name"/> and returns its result.</summary>
    public static T Run<T>(string name, Func<T> action)
    {
        ArgumentNullException.ThrowIfNull(action);
        using NetworkNamespace ns = NetworkNamespace.Open(name);
        return ns.Run(action);
    }
}
