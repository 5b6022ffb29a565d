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
    [InlineData(2u, 1u, false, "Ok", "accepted (add_addr_accepted = 1)")]
    [InlineData(2u, 0u, true, "Ok", "accepted when the server sets the C flag")]
    [InlineData(2u, 0u, false, "Warning", "ignored")]
    [InlineData(0u, 1u, false, "Problem", "subflows = 0")]
    public void Client_accepts_add_addr_by_limit_or_by_a_subflow_endpoint(uint subflows, uint accepted, bool subflowEndpoint, string expectedSeverity, string value)
    {
        FindingSeverity severity = Enum.Parse<FindingSeverity>(expectedSeverity);
        var state = new PathManagerSnapshot(new MptcpLimits(subflows, accepted), subflowEndpoint ? [SubflowEndpoint] : [SignalEndpoint], null);
        HostFinding addAddr = Find(HostRole.Client, "kernel", state, "add_addr");
        Assert.Equal(severity, addAddr.Severity);
        Assert.StartsWith(value, addAddr.Value);
        Assert.Equal(severity != FindingSeverity.Problem, HostCheck.IsReady(HostCheck.Evaluate(State("kernel"), HostRole.Client, state)));
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
