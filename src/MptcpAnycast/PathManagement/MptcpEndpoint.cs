using System.Globalization;
using System.Net;

namespace MptcpAnycast.PathManagement;

/// <summary>Flags of an in-kernel path-manager endpoint (<c>MPTCP_PM_ADDR_FLAG_*</c>), as <c>ip mptcp endpoint</c> names them.</summary>
[Flags]
public enum MptcpEndpointFlags
{
    /// <summary>No flag: the address is known but neither announced nor used for subflows.</summary>
    None = 0,

    /// <summary>Announce this address to peers with ADD_ADDR (<c>signal</c>).</summary>
    Signal = 1,

    /// <summary>Open additional subflows from this address (<c>subflow</c>).</summary>
    Subflow = 2,

    /// <summary>Subflows on this address are backup subflows (<c>backup</c>).</summary>
    Backup = 4,

    /// <summary>Open subflows from this address to every announced peer address (<c>fullmesh</c>).</summary>
    Fullmesh = 8,

    /// <summary>Created by the kernel for a subflow it accepted (<c>implicit</c>); cannot be set.</summary>
    Implicit = 16,

    /// <summary>Linux 6.18+: a subflow endpoint used for every announced address (<c>laminar</c>).</summary>
    Laminar = 32,
}

/// <summary>
/// An in-kernel path-manager endpoint (<c>ip mptcp endpoint</c>): an address of this host with its id, optional port,
/// flags and interface.
/// </summary>
/// <param name="Id">The endpoint id, 1 to 255; 0 in <see cref="PathManagerClient.AddEndpointAsync"/> lets the kernel pick.</param>
/// <param name="Address">The local address.</param>
/// <param name="Port">The port, or 0 for none (a <c>signal</c> endpoint with a port also makes the kernel listen on it).</param>
/// <param name="Flags">What the kernel does with the address.</param>
/// <param name="InterfaceIndex">The interface (<c>dev</c>), or 0 for none.</param>
public sealed record MptcpEndpoint(byte Id, IPAddress Address, int Port, MptcpEndpointFlags Flags, int InterfaceIndex)
{
    /// <summary>The endpoint as <c>ip mptcp endpoint show</c> prints it: <c>192.0.2.1 port 8443 id 1 signal dev eth0</c>.</summary>
    public override string ToString()
    {
        var words = new List<string> { Address.ToString() };
        if (Port != 0)
        {
            words.Add($"port {Port.ToString(CultureInfo.InvariantCulture)}");
        }

        words.Add($"id {Id.ToString(CultureInfo.InvariantCulture)}");
        foreach (MptcpEndpointFlags flag in Enum.GetValues<MptcpEndpointFlags>())
        {
            if (flag != MptcpEndpointFlags.None && Flags.HasFlag(flag))
            {
                words.Add(flag.ToString().ToLowerInvariant());
            }
        }

        if (InterfaceIndex != 0)
        {
            words.Add($"dev {HostInterfaces.NameOf(InterfaceIndex) ?? "#" + InterfaceIndex.ToString(CultureInfo.InvariantCulture)}");
        }

        return string.Join(' ', words);
    }
}

/// <summary>The in-kernel path manager's per-namespace limits (<c>ip mptcp limits</c>).</summary>
/// <param name="Subflows">Additional subflows allowed per connection (<c>subflows</c>, kernel maximum 8).</param>
/// <param name="AddAddrAccepted">Peer ADD_ADDR announcements accepted per connection (<c>add_addr_accepted</c>, kernel maximum 8).</param>
public sealed record MptcpLimits(uint Subflows, uint AddAddrAccepted);
