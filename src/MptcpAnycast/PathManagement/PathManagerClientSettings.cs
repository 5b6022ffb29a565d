namespace MptcpAnycast.PathManagement;

/// <summary>Knobs for tests and the lab; users get <see cref="Default"/>.</summary>
internal sealed record PathManagerClientSettings
{
    public static readonly PathManagerClientSettings Default = new();

    /// <summary>
    /// Join <c>mptcp_pm_events</c> before the first userspace-PM command and stay joined. Only the test that pins down
    /// the kernel's behaviour without a subscriber turns this off.
    /// </summary>
    public bool HoldEventSubscription { get; init; } = true;

    /// <summary><c>SO_RCVBUF</c> of the event socket, or null for the system default.</summary>
    public int? EventReceiveBufferSize { get; init; }

    /// <summary>
    /// <c>SO_RCVBUF</c> of the command socket, or null for the system default. It only ever holds one command's answer
    /// (commands are one at a time); a test shrinks it to show that a burst of commands still loses none.
    /// </summary>
    public int? CommandReceiveBufferSize { get; init; }

    /// <summary>The generic-netlink family to resolve; only tests change it (to see how a missing family is reported).</summary>
    public string FamilyName { get; init; } = Interop.MptcpPmConstants.MPTCP_PM_NAME;

    /// <summary>How long a command waits for the kernel's answer.</summary>
    public TimeSpan CommandTimeout { get; init; } = TimeSpan.FromSeconds(10);
}
