using System.Text.Json;
using MptcpAnycast.Lab.Tests.Infrastructure;

namespace MptcpAnycast.Lab.Tests;

/// <summary>The <c>mptcp-anycast check</c> program, run as an operator would, inside a namespace.</summary>
public sealed class HostCheckNamespaceTests
{
    private static CommandResult Check(LabNamespace ns, params string[] args) => ns.TryExec("dotnet", [LabTool.AssemblyPath, "check", .. args]);

    [LabFact]
    public void Server_check_warns_about_the_c_flag_sysctl_as_the_transport_does_and_stays_ready()
    {
        using LabNamespace ns = Topology.Single("check");
        ns.Sysctl("net.mptcp.allow_join_initial_addr_port", "1");

        (int code, string output) = Check(ns, "--role", "server");
        Assert.True(code == 0, output);
        Assert.Contains("[warning] c_flag", output);
        Assert.Contains("fix: sysctl -w net.mptcp.allow_join_initial_addr_port=0", output);
        Assert.Contains("READY for role server", output);

        ns.Sysctl("net.mptcp.allow_join_initial_addr_port", "0");
        (code, output) = Check(ns, "--role", "server");
        Assert.True(code == 0, output);
        Assert.Contains("[ok     ] c_flag", output);
    }

    [LabFact]
    public void Client_check_is_not_ready_with_default_limits_and_ready_once_add_addr_is_accepted()
    {
        using LabNamespace ns = Topology.Single("check");
        ns.Ip("mptcp", "limits", "set", "add_addr_accepted", "0", "subflows", "2");

        (int code, string output) = Check(ns, "--role", "client");
        Assert.True(code == 1, output);
        Assert.Contains("[problem] add_addr", output);
        Assert.Contains("fix: ip mptcp limits set add_addr_accepted 1 subflows 2", output);
        Assert.Contains("NOT READY for role client", output);

        ns.Ip("mptcp", "limits", "set", "add_addr_accepted", "1", "subflows", "2");
        (code, output) = Check(ns, "--role", "client");
        Assert.True(code == 0, output);
        Assert.Contains("[ok     ] add_addr", output);
        Assert.Contains("READY for role client", output);

        ns.Ip("mptcp", "limits", "set", "subflows", "0");
        (code, output) = Check(ns, "--role", "client", "--json");
        Assert.Equal(1, code);
        using JsonDocument doc = JsonDocument.Parse(output);
        Assert.False(doc.RootElement.GetProperty("ready").GetBoolean());
        JsonElement addAddr = doc.RootElement.GetProperty("findings").EnumerateArray().Single(f => f.GetProperty("name").GetString() == "add_addr");
        Assert.Equal("problem", addAddr.GetProperty("severity").GetString());
        Assert.Equal("ip mptcp limits set add_addr_accepted 1 subflows 1", addAddr.GetProperty("fix").GetString());
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
