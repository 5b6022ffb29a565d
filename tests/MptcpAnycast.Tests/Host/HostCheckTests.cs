using MptcpAnycast.Host;

namespace MptcpAnycast.Tests.Host;

public sealed class HostCheckTests
{
    private static MptcpHostState ReadyServer() => new()
    {
        Support = MptcpSocket.CheckSupport(),
        Enabled = 1,
        PathManagerSetting = "userspace",
        AllowJoinInitialAddrPort = 0,
        AddAddrTimeout = 120,
        KernelRelease = "6.18.44",
        HasNetAdmin = true,
    };

    [Fact]
    public void Ready_server_has_no_problem()
    {
        IReadOnlyList<HostFinding> findings = HostCheck.Evaluate(ReadyServer(), HostRole.Server);
        Assert.True(HostCheck.IsReady(findings), string.Join("\n", findings));
        Assert.All(findings, f => Assert.Equal(FindingSeverity.Ok, f.Severity));
    }

    [Fact]
    public void C_flag_off_is_a_warning_for_a_server_as_for_the_transport_with_the_sysctl_and_how_to_keep_it()
    {
        MptcpHostState state = ReadyServer() with { AllowJoinInitialAddrPort = 1 };
        IReadOnlyList<HostFinding> findings = HostCheck.Evaluate(state, HostRole.Server);

        HostFinding cflag = Assert.Single(findings, f => f.Name == "c_flag");
        Assert.Equal(FindingSeverity.Warning, cflag.Severity);
        Assert.Equal("sysctl -w net.mptcp.allow_join_initial_addr_port=0", cflag.Fix);
        Assert.Equal("echo 'net.mptcp.allow_join_initial_addr_port = 0' >> /etc/sysctl.d/90-mptcp-anycast.conf", cflag.Persist);
        Assert.True(HostCheck.IsReady(findings), string.Join("\n", findings));
        Assert.True(HostCheck.IsCFlagOff(state));
    }

    [Theory]
    [InlineData(0, false)]
    [InlineData(1, true)]
    [InlineData(null, false)]
    public void The_transport_sets_the_c_flag_only_where_the_sysctl_exists_and_is_1(int? allowJoin, bool off)
    {
        MptcpHostState state = ReadyServer() with { AllowJoinInitialAddrPort = allowJoin };
        Assert.Equal(off, HostCheck.IsCFlagOff(state));
        FindingSeverity severity = Assert.Single(HostCheck.Evaluate(state, HostRole.Server), f => f.Name == "c_flag").Severity;
        Assert.Equal(allowJoin == 0 ? FindingSeverity.Ok : FindingSeverity.Warning, severity);
    }

    [Fact]
    public void Mptcp_disabled_is_a_problem_for_both_roles_with_the_sysctl_and_its_sysctl_d_line()
    {
        MptcpHostState state = ReadyServer() with
        {
            Enabled = 0,
            Support = MptcpSupport.FromErrno(MptcpAnycast.Interop.Errno.ENOPROTOOPT, System.Net.Sockets.AddressFamily.InterNetwork),
        };
        foreach (HostRole role in Enum.GetValues<HostRole>())
        {
            IReadOnlyList<HostFinding> findings = HostCheck.Evaluate(state, role);
            HostFinding mptcp = Assert.Single(findings, f => f.Name == "mptcp");
            Assert.Equal(FindingSeverity.Problem, mptcp.Severity);
            Assert.Equal("sysctl -w net.mptcp.enabled=1", mptcp.Fix);
            Assert.Equal("echo 'net.mptcp.enabled = 1' >> /etc/sysctl.d/90-mptcp-anycast.conf", mptcp.Persist);
            Assert.False(HostCheck.IsReady(findings));
        }
    }

    [Fact]
    public void Client_under_the_userspace_path_manager_is_warned_that_the_kernel_joins_nothing_by_itself()
    {
        HostFinding pm = Assert.Single(HostCheck.Evaluate(ReadyServer(), HostRole.Client), f => f.Name == "path_manager");
        Assert.Equal(FindingSeverity.Warning, pm.Severity);
        Assert.Equal("sysctl -w net.mptcp.path_manager=kernel", pm.Fix);

        HostFinding kernel = Assert.Single(HostCheck.Evaluate(ReadyServer() with { PathManagerSetting = "kernel" }, HostRole.Client), f => f.Name == "path_manager");
        Assert.Equal(FindingSeverity.Ok, kernel.Severity);
    }

    [Fact]
    public void C_flag_does_not_matter_for_a_client()
    {
        IReadOnlyList<HostFinding> findings = HostCheck.Evaluate(ReadyServer() with { AllowJoinInitialAddrPort = 1, HasNetAdmin = false }, HostRole.Client);
        Assert.DoesNotContain(findings, f => f.Name == "c_flag");
        Assert.True(HostCheck.IsReady(findings));
    }

    [Fact]
    public void Missing_cap_net_admin_is_a_warning_for_a_server()
    {
        IReadOnlyList<HostFinding> findings = HostCheck.Evaluate(ReadyServer() with { HasNetAdmin = false }, HostRole.Server);
        HostFinding cap = Assert.Single(findings, f => f.Name == "cap_net_admin");
        Assert.Equal(FindingSeverity.Warning, cap.Severity);
        Assert.True(HostCheck.IsReady(findings));
    }

    [Fact]
    public void Old_kernel_without_userspace_pm_is_a_warning_and_pm_type_is_read_when_path_manager_is_missing()
    {
        MptcpHostState state = ReadyServer() with { KernelRelease = "5.15.0-91-generic", PathManagerSetting = null, PmType = 0 };
        IReadOnlyList<HostFinding> findings = HostCheck.Evaluate(state, HostRole.Server);
        Assert.Equal(FindingSeverity.Warning, Assert.Single(findings, f => f.Name == "kernel").Severity);
        Assert.Contains("pm_type", Assert.Single(findings, f => f.Name == "path_manager").Value);
        Assert.Equal(new Version(5, 15), state.KernelVersion);
    }

    [Fact]
    public void Zero_add_addr_timeout_is_a_warning()
    {
        IReadOnlyList<HostFinding> findings = HostCheck.Evaluate(ReadyServer() with { AddAddrTimeout = 0 }, HostRole.Server);
        Assert.Equal(FindingSeverity.Warning, Assert.Single(findings, f => f.Name == "add_addr_timeout").Severity);
    }

    [Fact]
    public void Host_state_reads_this_machines_proc()
    {
        MptcpHostState state = MptcpHostState.Read();
        Assert.Equal(File.ReadAllText("/proc/sys/net/mptcp/enabled").Trim(), state.Enabled?.ToString());
        Assert.Equal(File.ReadAllText("/proc/sys/kernel/osrelease").Trim(), state.KernelRelease);
        Assert.NotEqual(MptcpPathManagerKind.Unknown, state.PathManager);
    }

    [Fact]
    public void Capabilities_are_read_from_the_effective_set()
    {
        string root = Directory.CreateTempSubdirectory().FullName;
        Directory.CreateDirectory(Path.Combine(root, "self"));
        File.WriteAllText(Path.Combine(root, "self/status"), "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t0000000000001000\n");
        Assert.True(MptcpHostState.HasCapability(root, MptcpHostState.CapNetAdmin));
        File.WriteAllText(Path.Combine(root, "self/status"), "CapEff:\t0000000000000800\n");
        Assert.False(MptcpHostState.HasCapability(root, MptcpHostState.CapNetAdmin));
        Directory.Delete(root, recursive: true);
    }
}
