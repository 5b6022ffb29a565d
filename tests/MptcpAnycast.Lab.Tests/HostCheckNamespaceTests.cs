using System.Text.Json;
using MptcpAnycast.Lab.Tests.Infrastructure;

namespace MptcpAnycast.Lab.Tests;

/// <summary>The <c>mptcp-anycast check</c> program, run as an operator would, inside a namespace.</summary>
public sealed class HostCheckNamespaceTests
{
    private static CommandResult Check(LabNamespace ns, params string[] args) => ns.TryExec("dotnet", [LabTool.AssemblyPath, "check", .. args]);

    [LabFact]
    public void Server_check_flags_the_c_flag_sysctl_and_passes_once_it_is_zero()
    {
        using LabNamespace ns = Topology.Single("check");
        ns.Sysctl("net.mptcp.allow_join_initial_addr_port", "1");

        (int code, string output) = Check(ns, "--role", "server");
        Assert.Equal(1, code);
        Assert.Contains("[problem] c_flag", output);
        Assert.Contains("fix: sysctl -w net.mptcp.allow_join_initial_addr_port=0", output);
        Assert.Contains("NOT READY", output);

        ns.Sysctl("net.mptcp.allow_join_initial_addr_port", "0");
        (code, output) = Check(ns, "--role", "server");
        Assert.True(code == 0, output);
        Assert.Contains("READY for role server", output);
    }

    [LabFact]
    public void Check_in_a_namespace_with_mptcp_disabled_reports_why_in_json()
    {
        using LabNamespace ns = Topology.Single("check");
        ns.Sysctl("net.mptcp.enabled", "0");

        (int code, string output) = Check(ns, "--role", "client", "--json");
        Assert.Equal(1, code);
        using JsonDocument doc = JsonDocument.Parse(output);
        Assert.False(doc.RootElement.GetProperty("host").GetProperty("mptcpSupported").GetBoolean());
        Assert.Equal("Disabled", doc.RootElement.GetProperty("host").GetProperty("mptcpUnsupportedReason").GetString());
    }
}
