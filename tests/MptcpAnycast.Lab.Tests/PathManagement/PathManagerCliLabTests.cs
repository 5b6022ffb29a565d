using System.Net;
using System.Net.Sockets;
using MptcpAnycast.Cli;
using MptcpAnycast.Lab.Tests.Infrastructure;

namespace MptcpAnycast.Lab.Tests.PathManagement;

/// <summary>The path-manager commands of <c>mptcp-anycast</c>, run in a namespace against the real kernel.</summary>
[Collection(PathManagerLabCollection.Name)]
public sealed class PathManagerCliLabTests
{
    [LabFact]
    public void Endpoints_and_limits_commands_change_what_ip_mptcp_shows()
    {
        // The real tool under 'ip netns exec', as an operator runs it (interface names resolve in that namespace).
        using LabNamespace ns = Topology.Single("cli");
        ns.Ip("link", "add", "e0", "type", "veth", "peer", "name", "e1");
        ns.Ip("link", "set", "e0", "up");
        ns.Ip("addr", "add", "192.0.2.30/24", "dev", "e0");

        Assert.Equal("192.0.2.30 id 5 signal backup dev e0", Tool(ns, "endpoints add 192.0.2.30 --id 5 --flags signal,backup --dev e0").Output.Trim());
        Assert.Equal(ns.Ip("mptcp", "endpoint", "show").Trim(), Tool(ns, "endpoints list").Output.Trim());

        Assert.Equal("192.0.2.30 id 5 signal dev e0", Tool(ns, "endpoints change 192.0.2.30 --no-backup").Output.Trim());
        Assert.Equal(ns.Ip("mptcp", "endpoint", "show").Trim(), Tool(ns, "endpoints list").Output.Trim());

        Assert.Equal("add_addr_accepted 3 subflows 2", Tool(ns, "limits --add-addr-accepted 3").Output.Trim());
        Assert.Equal("add_addr_accepted 3 subflows 2", ns.Ip("mptcp", "limits", "show").Trim());

        (int code, string errors) = Tool(ns, "endpoints delete --id 99", expectedExit: 1);
        Assert.Contains("mptcp-anycast endpoints delete: MPTCP path manager DEL_ADDR failed", errors);
        Assert.DoesNotContain("   at ", errors);
        Assert.Equal(1, code);

        Tool(ns, "endpoints flush");
        Assert.Equal("", ns.Ip("mptcp", "endpoint", "show").Trim());
    }

    [LabFact]
    public void Without_cap_net_admin_changes_and_monitor_say_what_is_missing_and_reading_still_works()
    {
        using LabNamespace ns = Topology.Single("cli");
        string[] nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", "HOME=/tmp"];
        (_, string denied) = Tool(ns, "limits --subflows 3", expectedExit: 1, prefix: nobody);
        Assert.Contains("SET_LIMITS failed: Operation not permitted (errno 1): the process lacks CAP_NET_ADMIN", denied);
        (_, string monitor) = Tool(ns, "monitor --timeout 1", expectedExit: 1, prefix: nobody);
        Assert.Contains("subscribe mptcp_pm_events failed", monitor);
        Assert.Contains("CAP_NET_ADMIN", monitor);
        Assert.Equal("add_addr_accepted 0 subflows 2", Tool(ns, "limits", prefix: nobody).Output.Trim());
    }

    [LabFact]
    public async Task Announce_with_a_wrong_token_prints_the_kernels_message_and_exits_1()
    {
        using LabNamespace ns = Topology.Single("cli");
        ns.Sysctl("net.mptcp.path_manager", "userspace");
        (int code, string output, string errors) = await RunAsync(ns, "announce --token 0badc0de --id 1 --address 198.51.100.1 --port 8443");
        Assert.Equal(1, code);
        Assert.Equal("", output);
        Assert.Equal("mptcp-anycast announce: MPTCP path manager ANNOUNCE failed: invalid token (errno 22)", errors.Trim());
    }

    [LabFact]
    public async Task Monitor_prints_one_line_per_event_and_stops_after_count()
    {
        using LabNamespace ns = Topology.Single("cli");
        var stdout = new StringWriter();
        Task<int> monitor = ns.Run(() => Program.RunAsync(["monitor", "--json", "--count", "2", "--timeout", "15"], stdout, TextWriter.Null));
        await Task.Delay(500); // let it subscribe

        using Socket listener = ns.Run(() => MptcpSocket.CreateListener(new IPEndPoint(IPAddress.Loopback, 0)));
        using Socket client = ns.Run(() => MptcpSocket.Create(AddressFamily.InterNetwork));
        await client.ConnectAsync(listener.LocalEndPoint!).WithTimeout();

        Assert.Equal(0, await monitor.WithTimeout());
        string[] lines = stdout.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        Assert.StartsWith("{\"type\":\"LISTENER_CREATED\"", lines[0]);
        Assert.Contains($"\"sport\":{((IPEndPoint)listener.LocalEndPoint!).Port}", lines[0]);
        Assert.StartsWith("{\"type\":\"CREATED\"", lines[1]);
    }

    /// <summary>Runs the tool in <paramref name="ns"/>: [<paramref name="prefix"/>] dotnet mptcp-anycast.dll ARGUMENTS (split at spaces).</summary>
    private static (int Code, string Output) Tool(LabNamespace ns, string arguments, int expectedExit = 0, string[]? prefix = null)
    {
        string[] command = [.. prefix ?? [], "dotnet", typeof(Program).Assembly.Location, .. arguments.Split(' ')];
        (int code, string output) = ns.TryExec(command[0], command[1..]);
        Assert.True(code == expectedExit, $"'mptcp-anycast {arguments}' exited with {code}: {output}");
        return (code, output);
    }

    private static async Task<(int Code, string Output, string Errors)> RunAsync(LabNamespace ns, string commandLine)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = await ns.Run(() => Program.RunAsync(commandLine.Split(' '), stdout, stderr)).WithTimeout();
        return (code, stdout.ToString(), stderr.ToString());
    }
}
