using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;
using MptcpAnycast.Lab.Tests.Infrastructure;

namespace MptcpAnycast.Lab.Tests.Transport;

/// <summary>
/// The POP server (<c>mptcp-anycast lab serve</c>) on the MPTCP transport inside a namespace, real MPTCP clients in
/// another (<see cref="TransportLab"/>, no route change): what only one server and its host show. Here: start-up
/// errors (kernel mode without its endpoint, userspace mode under the kernel path manager, a unicast address the host
/// lacks), the kernel endpoint's lifecycle (created, kept when not ours, removed at shutdown and after a crash),
/// on-demand and delayed announcements (also the late C-flag join), another process's connections left alone,
/// CAP_NET_ADMIN only and none, and connection churn.
/// The fallback matrix (a client that accepts ADD_ADDR joining, default limits with one address, plain TCP, a
/// firewall dropping joins, the MPTCP option stripped, IPv6, IPv6 unicast for an IPv4-only socket, NAT, shared IPv4)
/// lives in <c>EndToEnd/AnycastEndToEndTests</c>, across a real route change; the kernel's own flip mechanics and the
/// backup-demotion stall in <c>Lab/AnycastFlipTests</c>.
/// </summary>
public sealed class TransportNamespaceTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private const string Base = "http://203.0.113.1:8080";

    internal static string[] ServerArgs(string mode, params string[] extra) =>
    [
        "--urls", "http://[::]:8080",
        "--MptcpAnycast:Mode", mode,
        "--MptcpAnycast:AnycastAddresses:0", "203.0.113.1",
        "--MptcpAnycast:AnycastAddresses:1", "2001:db8:a::1",
        "--MptcpAnycast:UnicastAddresses:0", "192.0.2.2",
        "--MptcpAnycast:UnicastAddresses:1", "2001:db8:1::2",
        .. extra,
    ];

    [LabFact]
    public async Task Kernel_mode_creates_its_signal_endpoint_the_client_joins_and_shutdown_removes_it()
    {
        using var lab = new TransportLab("kernel");
        PopServer server = await lab.StartServerAsync("pop-a", ServerArgs("Kernel", "--MptcpAnycast:ConfigureHost", "true"));
        try
        {
            Assert.False(server.HasExited, server.Output);
            string endpoints = lab.Server.Ip("mptcp", "endpoint", "show");
            Assert.Contains("192.0.2.2", endpoints);
            Assert.Contains("signal", endpoints);
            using HttpClient client = lab.CreateClient();

            JsonElement state = await TransportLab.WaitForStateAsync(client, Base, "Joined");

            Assert.Equal("Joined", state.GetProperty("state").GetString());
            Assert.Contains("mode Kernel", server.Output);
        }
        finally
        {
            Assert.True(server.Stop(TimeSpan.FromSeconds(15)), "the server did not stop on SIGTERM");
            server.Dispose();
        }

        Assert.DoesNotContain("192.0.2.2", lab.Server.Ip("mptcp", "endpoint", "show"));
    }

    [LabFact]
    public async Task Short_connections_report_their_join_and_every_join_the_kernel_made_is_counted()
    {
        // One request per connection, closed at once (as curl does): the request is often answered before the join's
        // event is handled, and the connection closed before it comes. Each answer that shows the unicast subflow must say
        // Joined, and the transport must count as many joins as the server's kernel completed, also for connections
        // whose state nobody read.
        using var lab = new TransportLab("userspace");
        using PopServer server = await lab.StartServerAsync("pop-a", ServerArgs("Userspace", "--MptcpAnycast:JoinTimeout", "00:00:01"));
        Assert.False(server.HasExited, server.Output);
        long joinsBefore = lab.Server.Counter("MPTcpExtMPJoinAckRx");
        int withUnicastSubflow = 0;
        var mislabelled = new List<string>();
        for (int i = 0; i < 40; i++)
        {
            using HttpClient client = lab.CreateClient();
            JsonElement state = await TransportLab.GetStateAsync(client, Base).WithTimeout();
            bool joined = state.GetProperty("subflows").EnumerateArray().Any(s => s.GetProperty("local").GetString()!.StartsWith("192.0.2.2:", StringComparison.Ordinal));
            if (joined)
            {
                withUnicastSubflow++;
                if (state.GetProperty("state").GetString() != "Joined")
                {
                    mislabelled.Add(state.ToString());
                }
            }
        }

        Assert.True(withUnicastSubflow > 0, "no answer showed the unicast subflow: the client never joined");
        Assert.True(mislabelled.Count == 0, $"{mislabelled.Count} of {withUnicastSubflow} answers showed the unicast subflow but not Joined:\n{string.Join('\n', mislabelled)}");

        // The same with requests that never look at the connection's state: only the kernel's events tell of the joins,
        // most of them after the connection has closed.
        for (int i = 0; i < 40; i++)
        {
            using HttpClient client = lab.CreateClient();
            Assert.StartsWith("Hello from pop-a", await client.GetStringAsync($"{Base}/").WithTimeout());
        }

        long kernelJoins = lab.Server.Counter("MPTcpExtMPJoinAckRx") - joinsBefore;
        using HttpClient stats = lab.CreateClient(mptcp: false);
        long counted = 0;
        Assert.True(await Eventually.WaitAsync(() =>
        {
            counted = stats.GetFromJsonAsync<Dictionary<string, long>>($"{Base}/mptcp/stats").GetAwaiter().GetResult()!
                .GetValueOrDefault("mptcp_anycast.joins");
            return counted == kernelJoins;
        }, TimeSpan.FromSeconds(5)), $"the transport counted {counted} joins, the server's kernel completed {kernelJoins}");
        output.WriteLine($"{withUnicastSubflow} of 40 state answers showed the unicast subflow; {kernelJoins} joins completed in 80 connections, all counted");
    }

    [LabFact]
    public async Task Kernel_mode_keeps_an_endpoint_it_did_not_create()
    {
        using var lab = new TransportLab("kernel");
        lab.Server.Ip("mptcp", "endpoint", "add", "192.0.2.2", "signal");
        PopServer server = await lab.StartServerAsync("pop-a", ServerArgs("Kernel", "--MptcpAnycast:ConfigureHost", "true"));
        Assert.False(server.HasExited, server.Output);
        server.Dispose();

        Assert.Contains("192.0.2.2", lab.Server.Ip("mptcp", "endpoint", "show"));
    }

    [LabFact]
    public async Task Kernel_mode_without_its_endpoint_fails_start_with_the_command_and_binds_nothing()
    {
        using var lab = new TransportLab("kernel");
        using PopServer server = await lab.StartServerAsync("pop-a", ServerArgs("Kernel"));

        Assert.True(server.HasExited);
        Assert.NotEqual(0, server.ExitCode);
        Assert.Contains("MptcpAnycast:UnicastAddresses = '192.0.2.2'", server.Output);
        Assert.Contains("ip mptcp endpoint add 192.0.2.2", server.Output);
        Assert.DoesNotContain(":8080", lab.Server.Exec("ss", "-Hltn"));
    }

    [LabFact]
    public async Task Userspace_mode_in_a_kernel_path_manager_namespace_fails_start_with_the_fix()
    {
        using var lab = new TransportLab("kernel");
        using PopServer server = await lab.StartServerAsync("pop-a", ServerArgs("Userspace"));

        Assert.True(server.HasExited);
        Assert.Contains("MptcpAnycast:Mode = 'Userspace'", server.Output);
        Assert.Contains("sysctl -w net.mptcp.path_manager=userspace", server.Output);
        Assert.DoesNotContain(":8080", lab.Server.Exec("ss", "-Hltn"));
    }

    [LabFact]
    public async Task Unicast_address_the_host_does_not_have_fails_start()
    {
        using var lab = new TransportLab("userspace");
        using PopServer server = await lab.StartServerAsync("pop-a",
            "--urls", "http://[::]:8080", "--MptcpAnycast:UnicastAddresses:0", "198.51.100.99");

        Assert.True(server.HasExited);
        Assert.Contains("MptcpAnycast:UnicastAddresses = '198.51.100.99'", server.Output);
        Assert.Contains("no interface of this host has this address", server.Output);
    }

    [LabFact]
    public async Task On_demand_announcement_happens_only_when_the_app_asks()
    {
        using var lab = new TransportLab("userspace");
        using PopServer server = await lab.StartServerAsync("pop-a", ServerArgs("Userspace", "--MptcpAnycast:AnnounceOn", "Demand"));
        using HttpClient client = lab.CreateClient();

        JsonElement before = await TransportLab.GetStateAsync(client, Base);
        await Task.Delay(300);
        JsonElement stillBefore = await TransportLab.GetStateAsync(client, Base);
        using HttpResponseMessage announce = await client.PostAsync($"{Base}/mptcp/announce", null);
        JsonElement after = await TransportLab.WaitForStateAsync(client, Base, "Joined");

        Assert.Equal("NotAnnounced", before.GetProperty("state").GetString());
        Assert.Equal("NotAnnounced", stillBefore.GetProperty("state").GetString());
        Assert.Equal(1, stillBefore.GetProperty("subflows").GetArrayLength());
        Assert.True(announce.IsSuccessStatusCode);
        Assert.Equal("Joined", after.GetProperty("state").GetString());
        Assert.Equal(before.GetProperty("token").GetString(), after.GetProperty("token").GetString()); // same connection
    }

    [LabFact]
    public async Task A_delayed_announcement_comes_after_the_delay_and_the_client_joins()
    {
        using var lab = new TransportLab("userspace");
        using PopServer server = await lab.StartServerAsync("pop-a",
            ServerArgs("Userspace", "--MptcpAnycast:AnnounceDelay", "00:00:00.800"));
        Assert.False(server.HasExited, server.Output);
        using HttpClient client = lab.CreateClient(); // an MPTCP client; one kept-alive connection

        JsonElement early = await TransportLab.GetStateAsync(client, Base);
        JsonElement after = await TransportLab.WaitForStateAsync(client, Base, "Joined", timeout: TimeSpan.FromSeconds(10));

        Assert.Equal("NotAnnounced", early.GetProperty("state").GetString());
        Assert.Contains("AnnounceDelay", early.GetProperty("stateReason").GetString());
        Assert.Equal(1, early.GetProperty("subflows").GetArrayLength());
        Assert.Equal("Joined", after.GetProperty("state").GetString());
        Assert.Equal(early.GetProperty("token").GetString(), after.GetProperty("token").GetString()); // same connection
        Assert.Contains(after.GetProperty("subflows").EnumerateArray(), s => s.GetProperty("local").GetString() == "192.0.2.2:8080");
    }

    [LabFact]
    public async Task Another_process_mptcp_connection_in_the_namespace_gets_no_announcement()
    {
        using var lab = new TransportLab("userspace");
        using PopServer server = await lab.StartServerAsync("pop-a", ServerArgs("Userspace"));
        using HttpClient client = lab.CreateClient();
        Assert.Equal("Joined", (await TransportLab.WaitForStateAsync(client, Base, "Joined")).GetProperty("state").GetString());

        // A second MPTCP server in the same namespace (this test process), on the anycast address too.
        using Socket otherListener = lab.Server.Run(() => MptcpSocket.CreateListener(new IPEndPoint(TransportLab.Anycast4, 9090)));
        using Socket otherClient = lab.Client.Run(() => MptcpSocket.Create(AddressFamily.InterNetwork));
        Task<Socket> accept = otherListener.AcceptAsync().WithTimeout(what: "accept on port 9090");
        await otherClient.ConnectAsync(new IPEndPoint(TransportLab.Anycast4, 9090)).WithTimeout(what: "connect to port 9090");
        using Socket otherServer = await accept;
        await otherClient.SendAsync(new byte[] { 1 }).WithTimeout();
        await Task.Delay(1000);

        MptcpConnectionInfo serverSide = MptcpSocket.GetConnectionInfo(otherServer);
        MptcpConnectionInfo clientSide = MptcpSocket.GetConnectionInfo(otherClient);
        Assert.True(serverSide.IsMptcp);
        Assert.Equal(0, serverSide.AddAddrSignal);
        Assert.Equal(0, clientSide.AddAddrAccepted);
        Assert.Single(MptcpSocket.GetSubflows(otherServer));
    }

    [LabFact]
    public async Task Default_limits_client_with_a_subflow_endpoint_joins_an_announcement_made_late_on_demand()
    {
        // The C-flag case: the client accepts one ADD_ADDR despite add_addr_accepted 0, and opens the subflow from its
        // 'subflow' endpoint. Measured on Linux 6.18: also when the ADD_ADDR comes seconds after the handshake.
        using var lab = new TransportLab("userspace", clientAddAddrAccepted: 0, clientSubflowEndpoint: "192.0.2.11");
        using PopServer server = await lab.StartServerAsync("pop-a", ServerArgs("Userspace", "--MptcpAnycast:AnnounceOn", "Demand"));
        using HttpClient client = lab.CreateClient();

        JsonElement before = await TransportLab.GetStateAsync(client, Base);
        await Task.Delay(2000);
        using HttpResponseMessage announce = await client.PostAsync($"{Base}/mptcp/announce", null);
        JsonElement after = await TransportLab.WaitForStateAsync(client, Base, "Joined");

        Assert.Equal("NotAnnounced", before.GetProperty("state").GetString());
        Assert.Equal("Joined", after.GetProperty("state").GetString());
        Assert.Contains(after.GetProperty("subflows").EnumerateArray(), s => s.GetProperty("remote").GetString()!.StartsWith("192.0.2.11:", StringComparison.Ordinal));
    }

    [LabFact]
    public async Task Endpoint_left_by_a_crashed_server_is_removed_at_the_next_start()
    {
        using var lab = new TransportLab("kernel");
        PopServer crashed = await lab.StartServerAsync("pop-a", ServerArgs("Kernel", "--MptcpAnycast:ConfigureHost", "true"));
        Assert.Contains("192.0.2.2", lab.Server.Ip("mptcp", "endpoint", "show"));
        crashed.Kill();
        Assert.Contains("192.0.2.2", lab.Server.Ip("mptcp", "endpoint", "show")); // left behind

        PopServer next = await lab.StartServerAsync("pop-a", ServerArgs("Kernel", "--MptcpAnycast:ConfigureHost", "true"));
        Assert.False(next.HasExited, next.Output);
        Assert.Contains("left behind by process", next.Output);
        Assert.Single(lab.Server.Ip("mptcp", "endpoint", "show").Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l.Contains("192.0.2.2"));
        Assert.True(next.Stop(TimeSpan.FromSeconds(15)));
        next.Dispose();

        Assert.DoesNotContain("192.0.2.2", lab.Server.Ip("mptcp", "endpoint", "show"));
    }

    private static readonly string[] NobodyWithNetAdmin =
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=+net_admin", "--ambient-caps=+net_admin", "--"];

    private static readonly string[] NobodyWithoutCapabilities =
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--"];

    [LabFact]
    public async Task An_ordinary_user_with_only_cap_net_admin_announces_and_the_client_joins()
    {
        using var lab = new TransportLab("userspace");
        using PopServer server = await lab.StartServerAsync("pop-a", NobodyWithNetAdmin, ServerArgs("Userspace"));
        Assert.False(server.HasExited, server.Output);
        string status = File.ReadAllText($"/proc/{server.Pid}/status");
        Assert.Contains("Uid:\t65534", status);
        Assert.Matches(@"CapEff:\s+0000000000001000", status); // CAP_NET_ADMIN (bit 12) and nothing else
        using HttpClient client = lab.CreateClient();

        JsonElement state = await TransportLab.WaitForStateAsync(client, Base, "Joined");

        Assert.Equal("Joined", state.GetProperty("state").GetString());
    }

    [LabFact]
    public async Task Without_cap_net_admin_the_server_says_so_once_and_serves_single_path()
    {
        using var lab = new TransportLab("userspace");
        using PopServer server = await lab.StartServerAsync("pop-a", NobodyWithoutCapabilities, ServerArgs("Userspace"));
        Assert.False(server.HasExited, server.Output);
        using HttpClient client = lab.CreateClient();

        JsonElement first = await TransportLab.GetStateAsync(client, Base);
        using HttpClient second = lab.CreateClient();
        JsonElement other = await TransportLab.GetStateAsync(second, Base);

        Assert.True(first.GetProperty("mptcp").GetBoolean());
        Assert.Equal("Failed", first.GetProperty("state").GetString());
        Assert.Contains("CAP_NET_ADMIN", first.GetProperty("stateReason").GetString());
        Assert.Equal("Failed", other.GetProperty("state").GetString());
        Assert.Single(server.Output.Split('\n'), l => l.Contains("No CAP_NET_ADMIN", StringComparison.Ordinal));
    }

    [LabFact]
    public async Task Connection_churn_returns_file_descriptors_and_memory_to_their_baseline()
    {
        // Bounded soak: wrk opens and closes MPTCP connections for 8 s (each announced, and joined by the client).
        using var lab = new TransportLab("userspace");
        using PopServer server = await lab.StartServerAsync("pop-a",
            ServerArgs("Userspace", "--Logging:LogLevel:MptcpAnycast", "Warning"));
        using HttpClient client = lab.CreateClient();
        await TransportLab.WaitForStateAsync(client, Base, "Joined");
        client.Dispose();
        await Task.Delay(500);
        int fdsBefore = Directory.GetFiles($"/proc/{server.Pid}/fd").Length;

        (int wrkExit, string wrk) = lab.Client.TryExec(TimeSpan.FromSeconds(30), "mptcpize", "run", "wrk", "-t1", "-c16", "-d8s", "-H", "Connection: close", $"{Base}/");
        Assert.True(wrkExit == 0, wrk);
        await Task.Delay(3000); // closed connections leave the server's tables

        int fdsAfter = Directory.GetFiles($"/proc/{server.Pid}/fd").Length;
        System.Text.RegularExpressions.Match requests = System.Text.RegularExpressions.Regex.Match(wrk, @"(\d+) requests in");
        Assert.True(requests.Success, wrk);
        output.WriteLine($"{requests.Groups[1].Value} connections in 8 s; server fds {fdsBefore} before, {fdsAfter} after; RSS {File.ReadAllLines($"/proc/{server.Pid}/status").First(l => l.StartsWith("VmRSS", StringComparison.Ordinal))}");
        Assert.True(int.Parse(requests.Groups[1].Value) > 5000, $"too little churn to say anything: {wrk}");
        Assert.True(fdsAfter <= fdsBefore + 4, $"file descriptors: {fdsBefore} before, {fdsAfter} after {requests.Groups[1].Value} connections");
        Assert.DoesNotContain("fail", server.Output, StringComparison.OrdinalIgnoreCase);

        // Still serving and still announcing after the churn.
        using HttpClient after = lab.CreateClient();
        Assert.Equal("Joined", (await TransportLab.WaitForStateAsync(after, Base, "Joined")).GetProperty("state").GetString());
    }
}
