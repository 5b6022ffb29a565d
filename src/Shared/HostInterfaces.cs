using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace MptcpAnycast;

/// <summary>
/// The network interfaces of the calling thread's namespace: which addresses this host holds and on which interface.
/// Compiled into each assembly that needs it. Nothing here throws: an unreadable interface list reads as empty.
/// </summary>
internal static partial class HostInterfaces
{
    /// <summary>Every address an interface holds (IPv4-mapped ones as IPv4).</summary>
    public static IReadOnlyList<IPAddress> Addresses() =>
        [.. Interfaces().SelectMany(static nic => nic.GetIPProperties().UnicastAddresses).Select(static u => u.Address.Unmapped())];

    /// <summary>The interface that holds <paramref name="address"/>: its index and name, or null when none does.</summary>
    public static (int Index, string Name)? Holding(IPAddress address)
    {
        IPAddress wanted = address.Unmapped();
        foreach (NetworkInterface nic in Interfaces())
        {
            IPInterfaceProperties properties = nic.GetIPProperties();
            if (properties.UnicastAddresses.Any(u => u.Address.Unmapped().Equals(wanted)))
            {
                int index = wanted.AddressFamily == AddressFamily.InterNetworkV6
                    ? properties.GetIPv6Properties()?.Index ?? 0
                    : properties.GetIPv4Properties()?.Index ?? 0;
                return (index == 0 ? IndexOf(nic.Name) : index, nic.Name);
            }
        }

        return null;
    }

    /// <summary>The index of interface <paramref name="name"/>, or 0 when there is none by that name.</summary>
    public static int IndexOf(string name) => (int)if_nametoindex(name);

    /// <summary>The name of interface <paramref name="index"/>, or null.</summary>
    public static unsafe string? NameOf(int index)
    {
        const int IF_NAMESIZE = 16;
        byte* name = stackalloc byte[IF_NAMESIZE];
        return index > 0 && if_indextoname((uint)index, name) != null ? Marshal.PtrToStringUTF8((IntPtr)name) : null;
    }

    private static NetworkInterface[] Interfaces()
    {
        try
        {
            return NetworkInterface.GetAllNetworkInterfaces();
        }
        catch (NetworkInformationException)
        {
            return [];
        }
    }

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    private static partial uint if_nametoindex(string name);

    [LibraryImport("libc")]
    private static unsafe partial byte* if_indextoname(uint index, byte* name);
}
