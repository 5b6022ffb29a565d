using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;
using MptcpAnycast.Lab.Tests.Infrastructure;
using Xunit.Abstractions;

namespace MptcpAnycast.Lab.Tests.Transport;

/// <summary>
/// The POP server with the smallest event socket buffer, hit by bursts of MPTCP connections that each join the unicast
/// address: the kernel drops path-manager events, the transport says so and reconciles the joins it did not hear.
/// </summary>
public sealed class EventOverrunTests(ITestOutputHelper output)
{
    private const string Base = "http://203.0.113.1:8080";
    private const string LossLogged = "Path-manager events were lost";
    private const int ConnectionsPerBurst = 300;
    private const int MaxBursts = 5;

    [LabFact]
    public async Task Connection_bursts_that_overrun_the_event_socket_are_reported_and_every_join_is_reconciled()
    {
        using var lab = new TransportLab("userspace");
        using PopServer server = await lab.StartServerAsync("pop-a",
            TransportNamespaceTests.ServerArgs("Userspace", "--MptcpAnycast:EventSocketReceiveBufferSize", "4096",
                "--MptcpAnycast:JoinTimeout", "00:01:00")); // longer than the wait below: only reconciling can find a lost join
        Assert.False(server.HasExited, server.Output);
        var held = new List<HeldConnection>();
        try
        {
            // Bursts of concurrent connections, each asking for its state once and then kept open, until the server
            // reports lost events (at most five bursts). The server is stopped (SIGSTOP) while a burst connects: the
            // kernel completes the handshakes from the listen backlog and queues their events on the 4 KiB socket,
            // which nobody reads until SIGCONT. A running reader keeps up with a burst on a quiet machine, and then
            // there is no loss to report.
            int bursts = 0;
            while (bursts < MaxBursts && server.Count(LossLogged) == 0)
            {
                bursts++;
                HeldConnection[] burst = Enumerable.Range(0, ConnectionsPerBurst).Select(_ => new HeldConnection(lab)).ToArray();
                held.AddRange(burst);
                Task<JsonElement>[] requests;
                Signal(server, "STOP");
                try
                {
                    requests = [.. burst.Select(c => c.GetStateAsync())];
                    await Task.Delay(2000);
                }
                finally
                {
                    Signal(server, "CONT");
                }

                await Task.WhenAll(requests).WaitAsync(TimeSpan.FromSeconds(120));
                await Task.Delay(1000); // let the event reader catch up and log
            }

            output.WriteLine($"{bursts} burst(s) of {ConnectionsPerBurst} connections; loss logged {server.Count(LossLogged)} time(s)");
            Assert.False(server.HasExited, $"the server exited:\n{server.Output}");
            Assert.True(server.Count(LossLogged) > 0,
                $"no events lost after {bursts} bursts of {ConnectionsPerBurst} connections with a 4 KiB event buffer");

            // After a short wait every connection whose client has its second subflow is Joined on the server: the
            // joins whose events were dropped were read from the sockets. Re-ask only those not yet seen Joined.
            var pending = held.ToList();
            var notJoined = new List<string>();
            DateTime deadline = DateTime.UtcNow.AddSeconds(10);
            while (true)
            {
                JsonElement[] states = await Task.WhenAll(pending.Select(c => c.GetStateAsync())).WaitAsync(TimeSpan.FromSeconds(120));
                notJoined.Clear();
                var still = new List<HeldConnection>();
                for (int i = 0; i < pending.Count; i++)
                {
                    string? state = states[i].GetProperty("state").GetString();
                    if (pending[i].ClientSubflows == 2 && state != "Joined")
                    {
                        still.Add(pending[i]);
                        notJoined.Add($"{states[i].GetProperty("token").GetString()}: {state} ({states[i].GetProperty("stateReason").GetString()})");
                    }
                }

                pending = still;
                if (pending.Count == 0 || DateTime.UtcNow > deadline)
                {
                    break;
                }

                await Task.Delay(500);
            }

            int joined = held.Count(c => c.ClientSubflows == 2);
            output.WriteLine($"{held.Count} connections held, {joined} with two subflows at the client");
            Assert.True(notJoined.Count == 0,
                $"{notJoined.Count} of {joined} joined connections are not Joined on the server after 10 s:\n{string.Join('\n', notJoined.Take(20))}");
            Assert.True(joined >= held.Count / 2, $"only {joined} of {held.Count} connections joined: too few to say anything");

            // The server still answers, and its meter counted the loss.
            using HttpClient fresh = lab.CreateClient();
            Dictionary<string, long> stats = (await fresh.GetFromJsonAsync<Dictionary<string, long>>($"{Base}/mptcp/stats"))!;
            output.WriteLine(string.Join(", ", stats.Select(kv => $"{kv.Key}={kv.Value}")));
            Assert.True(stats["mptcp_anycast.path_manager.events_lost"] >= 1);
            Assert.True(stats["mptcp_anycast.connections.tracked"] >= held.Count, $"tracked {stats["mptcp_anycast.connections.tracked"]} of {held.Count} open");
            if (stats.GetValueOrDefault("mptcp_anycast.announcements{mptcp.announcement.result=failed}") > 0)
            {
                output.WriteLine($"announcements failed; the server's warnings:\n{Warnings(server)}");
            }

            JsonElement last = await TransportLab.WaitForStateAsync(fresh, Base, "Joined");
            Assert.True(last.GetProperty("state").GetString() == "Joined",
                $"a connection after the bursts: {last.GetProperty("state")} ({last.GetProperty("stateReason")}); the server's warnings:\n{Warnings(server)}");
            Assert.False(server.HasExited);
        }
        finally
        {
            held.ForEach(c => c.Dispose());
        }
    }

    private static void Signal(PopServer server, string signal) =>
        CommandRunner.Run("kill", [$"-{signal}", server.Pid.ToString(CultureInfo.InvariantCulture)]);

    /// <summary>The server's warning and error lines with the line after each (the message), at most 40.</summary>
    private static string Warnings(PopServer server)
    {
        string[] lines = server.Output.Split('\n');
        var picked = new List<string>();
        for (int i = 0; i < lines.Length && picked.Count < 40; i++)
        {
            if (lines[i].StartsWith("warn:", StringComparison.Ordinal) || lines[i].StartsWith("fail:", StringComparison.Ordinal))
            {
                picked.Add(lines[i]);
                if (i + 1 < lines.Length)
                {
                    picked.Add(lines[i + 1]);
                }
            }
        }

        return string.Join('\n', picked);
    }

    /// <summary>One MPTCP connection from the client namespace, kept open, with its own HttpClient.</summary>
    private sealed class HeldConnection : IDisposable
    {
        private readonly HttpClient _http;
        private Socket? _socket;

        public HeldConnection(TransportLab lab)
        {
            var handler = new SocketsHttpHandler
            {
                MaxConnectionsPerServer = 1,
                PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
                PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
                ConnectCallback = async (context, cancellationToken) =>
                {
                    Socket socket = lab.Client.Run(() => MptcpSocket.Create(AddressFamily.InterNetwork));
                    try
                    {
                        await socket.ConnectAsync(new IPEndPoint(IPAddress.Parse(context.DnsEndPoint.Host), context.DnsEndPoint.Port), cancellationToken);
                        _socket = socket;
                        return new NetworkStream(socket, ownsSocket: true);
                    }
                    catch
                    {
                        socket.Dispose();
                        throw;
                    }
                },
            };
            _http = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(60) };
        }

        /// <summary>The subflows the client's own socket has now (2 once it joined the unicast address).</summary>
        public int ClientSubflows => _socket is { } s ? MptcpSocket.GetSubflows(s).Length : 0;

        /// <summary>The token the first answer reported: later answers must come over the same connection.</summary>
        public string? Token { get; private set; }

        public async Task<JsonElement> GetStateAsync()
        {
            JsonElement state = await TransportLab.GetStateAsync(_http, Base);
            string? token = state.GetProperty("token").GetString();
            Token ??= token;
            Assert.True(Token == token, $"the HttpClient opened a second connection ({Token}, then {token})");
            return state;
        }

        public void Dispose() => _http.Dispose();
    }
}
