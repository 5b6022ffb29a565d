using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Lab.Tests.Infrastructure;

namespace MptcpAnycast.Lab.Tests;

public sealed class MptcpSupportNamespaceTests
{
    [LabFact]
    public void Namespace_with_mptcp_disabled_is_reported_unsupported_with_the_reason()
    {
        using LabNamespace ns = Topology.Single("off");
        ns.Sysctl("net.mptcp.enabled", "0");

        MptcpSupport support = ns.Run(() => MptcpSocket.CheckSupport());

        Assert.False(support.IsSupported);
        Assert.Equal(MptcpUnsupportedReason.Disabled, support.Reason);
        Assert.Equal(92, support.Errno); // ENOPROTOOPT
        Assert.Contains("net.mptcp.enabled=1", support.Message);
    }

    [LabFact]
    public void Namespace_with_mptcp_disabled_throws_with_the_fix_or_falls_back_to_tcp()
    {
        using LabNamespace ns = Topology.Single("off");
        ns.Sysctl("net.mptcp.enabled", "0");

        SocketException error = ns.Run(() => Assert.Throws<SocketException>(() => MptcpSocket.Create(AddressFamily.InterNetwork)));
        Assert.Contains("net.mptcp.enabled=1", error.Message);

        using Socket tcp = ns.Run(() => MptcpSocket.CreateListener(new IPEndPoint(IPAddress.Loopback, 0), fallback: MptcpFallback.Tcp));
        Assert.False(MptcpSocket.IsMptcpSocket(tcp));
    }

    [LabFact]
    public void Namespace_with_mptcp_enabled_is_reported_supported()
    {
        using LabNamespace ns = Topology.Single("on");
        ns.Sysctl("net.mptcp.enabled", "1");

        MptcpSupport support = ns.Run(() => MptcpSocket.CheckSupport(AddressFamily.InterNetworkV6));

        Assert.True(support.IsSupported, support.Message);
    }

    [LabFact]
    public async Task Mptcp_connection_inside_a_namespace_is_mptcp_on_both_ends()
    {
        using LabNamespace ns = Topology.Single("conn");
        using Socket listener = ns.Run(() => MptcpSocket.CreateListener(new IPEndPoint(IPAddress.Loopback, 0)));
        using Socket client = ns.Run(() => MptcpSocket.Create(AddressFamily.InterNetwork));
        Task<Socket> accept = listener.AcceptAsync().WithTimeout(what: "accept");
        await client.ConnectAsync(listener.LocalEndPoint!).WithTimeout(what: "connect");
        using Socket server = await accept;

        Assert.True(MptcpSocket.GetConnectionInfo(server).IsMptcp);
        Assert.NotEqual(0u, MptcpSocket.GetConnectionInfo(client).Token);
    }
}
