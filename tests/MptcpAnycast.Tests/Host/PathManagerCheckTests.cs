using System.Net;
using MptcpAnycast.Host;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Tests.Host;

public sealed class PathManagerCheckTests
{
    private static readonly MptcpEndpoint SignalEndpoint = new(1, IPAddress.Parse("198.51.100.1"), 0, MptcpEndpointFlags.Signal, 2);
    private static readonly MptcpEndpoint SubflowEndpoint = new(2, IPAddress.Parse("192.0.2.20"), 0, MptcpEndpointFlags.Subflow, 2);

    [Fact]
    public void Server_in_kernel_mode_without_a_signal_endpoint_is_warned_with_the_fix()
    {
        HostFinding endpoints = Find(HostRole.Server, "kernel", new PathManagerSnapshot(new MptcpLimits(2, 0), [SubflowEndpoint], null), "endpoints");
        Assert.Equal(FindingSeverity.Warning, endpoints.Severity);
        Assert.Contains("ip mptcp endpoint add UNICAST_ADDRESS dev IF signal", endpoints.Fix);
        Assert.Contains("ConfigureHost = true", endpoints.Persist);

        HostFinding good = Find(HostRole.Server, "kernel", new PathManagerSnapshot(new MptcpLimits(2, 0), [SignalEndpoint], null), "endpoints");
        Assert.Equal(FindingSeverity.Ok, good.Severity);
        Assert.Contains("198.51.100.1", good.Why);
    }

    [Fact]
    public void Server_in_userspace_mode_does_not_need_endpoints()
    {
        HostFinding endpoints = Find(HostRole.Server, "userspace", new PathManagerSnapshot(new MptcpLimits(2, 0), [], null), "endpoints");
        Assert.Equal(FindingSeverity.Ok, endpoints.Severity);
        Assert.Equal("none", endpoints.Value);
    }

    [Theory]
    [InlineData(2u, 1u, false, "Ok", "accepted (add_addr_accepted = 1)", null)]
    [InlineData(2u, 0u, true, "Warning", "accepted only after a C-flag handshake", "ip mptcp limits set add_addr_accepted 1 subflows 2")]
    [InlineData(2u, 0u, false, "Problem", "ignored", "ip mptcp limits set add_addr_accepted 1 subflows 2")]
    [InlineData(0u, 1u, false, "Problem", "subflows = 0", "ip mptcp limits set add_addr_accepted 1 subflows 1")]
    [InlineData(0u, 0u, true, "Problem", "subflows = 0", "ip mptcp limits set add_addr_accepted 1 subflows 1")]
    [InlineData(0u, 4u, false, "Problem", "subflows = 0", "ip mptcp limits set add_addr_accepted 4 subflows 1")]
    public void Client_is_ready_only_when_it_can_join_the_announced_address(uint subflows, uint accepted, bool subflowEndpoint,
        string expectedSeverity, string value, string? fix)
    {
        FindingSeverity severity = Enum.Parse<FindingSeverity>(expectedSeverity);
        var state = new PathManagerSnapshot(new MptcpLimits(subflows, accepted), subflowEndpoint ? [SubflowEndpoint] : [SignalEndpoint], null);
        HostFinding addAddr = Find(HostRole.Client, "kernel", state, "add_addr");
        Assert.Equal(severity, addAddr.Severity);
        Assert.StartsWith(value, addAddr.Value);
        Assert.Equal(fix, addAddr.Fix);
        if (fix is not null)
        {
            Assert.Contains("systemd oneshot", addAddr.Persist);
            Assert.Contains("NetworkManager", addAddr.Persist);
        }

        Assert.Equal(severity != FindingSeverity.Problem, HostCheck.IsReady(HostCheck.Evaluate(State("kernel"), HostRole.Client, state)));
    }

    [Fact]
    public void Linux_default_limits_leave_a_client_not_ready()
    {
        IReadOnlyList<HostFinding> findings = HostCheck.Evaluate(State("kernel"), HostRole.Client, new PathManagerSnapshot(new MptcpLimits(2, 0), [], null));
        Assert.False(HostCheck.IsReady(findings), string.Join("\n", findings));
        Assert.Contains("die when the anycast route moves", Assert.Single(findings, f => f.Severity == FindingSeverity.Problem).Why);
    }

    [Fact]
    public void Every_fix_is_a_system_command_not_this_tool()
    {
        var snapshots = new[]
        {
            new PathManagerSnapshot(new MptcpLimits(0, 0), [], null),
            new PathManagerSnapshot(new MptcpLimits(2, 0), [SubflowEndpoint], null),
            PathManagerSnapshot.Unreadable("x"),
        };
        foreach (HostRole role in Enum.GetValues<HostRole>())
        {
            foreach (PathManagerSnapshot snapshot in snapshots)
            {
                MptcpHostState state = State("kernel") with { AllowJoinInitialAddrPort = 1, AddAddrTimeout = 0, HasNetAdmin = false };
                foreach (HostFinding f in HostCheck.Evaluate(state, role, snapshot).Where(f => f.Fix is not null))
                {
                    Assert.DoesNotContain("mptcp-anycast", f.Fix, StringComparison.Ordinal);
                }
            }
        }
    }

    [Fact]
    public void A_signal_endpoint_announces_a_unicast_address_on_its_port_or_any_port_for_port_0()
    {
        var unicast = new System.Net.IPEndPoint(IPAddress.Parse("198.51.100.1"), 0);
        Assert.True(HostCheck.AnnouncesUnicast(SignalEndpoint, unicast));
        Assert.True(HostCheck.AnnouncesUnicast(SignalEndpoint, new System.Net.IPEndPoint(IPAddress.Parse("::ffff:198.51.100.1"), 0)));
        Assert.False(HostCheck.AnnouncesUnicast(SignalEndpoint, new System.Net.IPEndPoint(unicast.Address, 8443)));
        Assert.True(HostCheck.AnnouncesUnicast(SignalEndpoint with { Port = 8443 }, new System.Net.IPEndPoint(unicast.Address, 8443)));
        Assert.False(HostCheck.AnnouncesUnicast(SignalEndpoint with { Flags = MptcpEndpointFlags.Subflow }, unicast));
        Assert.False(HostCheck.AnnouncesUnicast(SignalEndpoint, new System.Net.IPEndPoint(IPAddress.Parse("198.51.100.2"), 0)));
    }

    [Fact]
    public void Unreadable_path_manager_is_a_warning_that_says_why()
    {
        HostFinding finding = Find(HostRole.Client, "kernel", PathManagerSnapshot.Unreadable("no mptcp_pm family"), "path_manager_state");
        Assert.Equal(FindingSeverity.Warning, finding.Severity);
        Assert.Equal("no mptcp_pm family", finding.Why);
        Assert.DoesNotContain(HostCheck.Evaluate(State("kernel"), HostRole.Client), f => f.Name is "limits" or "add_addr");
    }

    private static HostFinding Find(HostRole role, string pm, PathManagerSnapshot state, string name) =>
        Assert.Single(HostCheck.Evaluate(State(pm), role, state), f => f.Name == name);

    private static MptcpHostState State(string pathManager) => new()
    {
        Support = MptcpSupport.Supported,
        Enabled = 1,
        PathManagerSetting = pathManager,
        AllowJoinInitialAddrPort = 0,
        AddAddrTimeout = 120,
        KernelRelease = "6.18.0",
        HasNetAdmin = true,
    };
}
