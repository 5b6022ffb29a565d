namespace MptcpAnycast.PathManagement;

/// <summary>How a <see cref="PathManagerClient"/> talks to the kernel. The defaults suit a command-line tool; a server tunes the timeout.</summary>
public sealed class PathManagerClientOptions
{
    /// <summary>The defaults.</summary>
    public static PathManagerClientOptions Default { get; } = new();

    /// <summary>
    /// How long a command waits for the kernel's answer before it fails with <c>ETIMEDOUT</c>
    /// (<c>SO_RCVTIMEO</c> of the command socket: the bound holds whatever the kernel does). Default 10 seconds.
    /// </summary>
    public TimeSpan CommandTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The receive buffer of the event socket (<c>SO_RCVBUF</c>, in bytes; the kernel doubles it). Above
    /// <c>net.core.rmem_max</c> it is forced (<c>SO_RCVBUFFORCE</c>, which the <c>CAP_NET_ADMIN</c> that events need
    /// allows). Default null: the system default (<c>net.core.rmem_default</c>).
    /// </summary>
    public int? EventReceiveBufferSize { get; init; }

    /// <summary>
    /// Join <c>mptcp_pm_events</c> before the first userspace-PM command and stay joined. Only the test that pins down
    /// the kernel's behaviour without a subscriber turns this off.
    /// </summary>
    internal bool HoldEventSubscription { get; init; } = true;

    /// <summary>
    /// <c>SO_RCVBUF</c> of the command socket, or null for the system default. It only ever holds one command's answer
    /// (commands are one at a time); a test shrinks it to show that a burst of commands still loses none.
    /// </summary>
    internal int? CommandReceiveBufferSize { get; init; }

    /// <summary>The generic-netlink family to resolve; only tests change it (to see how a missing family is reported).</summary>
    internal string FamilyName { get; init; } = Interop.MptcpPmConstants.MPTCP_PM_NAME;

    internal void Validate()
    {
        if (CommandTimeout <= TimeSpan.Zero || CommandTimeout > TimeSpan.FromDays(1))
        {
            throw new ArgumentOutOfRangeException(nameof(CommandTimeout), CommandTimeout, "the command timeout must be more than 0 and at most a day");
        }

        if (EventReceiveBufferSize is < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(EventReceiveBufferSize), EventReceiveBufferSize, "the event receive buffer must be at least 1 byte");
        }
    }
}
