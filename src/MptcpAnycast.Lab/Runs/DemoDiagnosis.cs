using System.Globalization;
using System.Text.Json;

namespace MptcpAnycast.Lab;

/// <summary>Why a connection of the demo did not survive the route change, and what would let it.</summary>
/// <param name="Reason">What went wrong, with the evidence: the server's state for the connection, the client kernel's counters.</param>
/// <param name="Fix">What to change, as a command where there is one (on the real client or server, and in the lab's own terms).</param>
public sealed record DemoDiagnosis(string Reason, string Fix)
{
    /// <summary>What the client's kernel says about MPTCP after the run: its limits and the counters of ADD_ADDR and MP_JOIN.</summary>
    /// <param name="AddAddrAccepted">The client's <c>add_addr_accepted</c> limit; null when <c>ip mptcp limits show</c> did not say.</param>
    /// <param name="AddAddrReceived">ADD_ADDR options received (<c>MPTcpExtAddAddr</c>).</param>
    /// <param name="JoinSynSent">MP_JOIN SYNs sent (<c>MPTcpExtMPJoinSynTx</c>).</param>
    /// <param name="JoinSynAckReceived">MP_JOIN SYN-ACKs received (<c>MPTcpExtMPJoinSynAckRx</c>).</param>
    public sealed record ClientEvidence(int? AddAddrAccepted, long AddAddrReceived, long JoinSynSent, long JoinSynAckReceived)
    {
        /// <summary>Reads the evidence in the client's namespace; counters it cannot read count as 0.</summary>
        public static ClientEvidence Read(LabNamespace client)
        {
            ArgumentNullException.ThrowIfNull(client);
            CommandResult limits = client.TryIp("mptcp", "limits", "show");
            return new ClientEvidence(ParseLimit(limits.Output, "add_addr_accepted"), Counter(client, "MPTcpExtAddAddr"),
                Counter(client, "MPTcpExtMPJoinSynTx"), Counter(client, "MPTcpExtMPJoinSynAckRx"));
        }

        /// <summary>The value after <paramref name="name"/> in <c>ip mptcp limits show</c> output (<c>add_addr_accepted 0 subflows 2</c>).</summary>
        public static int? ParseLimit(string output, string name)
        {
            ArgumentNullException.ThrowIfNull(output);
            string[] words = output.Split((char[])[' ', '\n', '\t'], StringSplitOptions.RemoveEmptyEntries);
            int at = Array.IndexOf(words, name);
            return at >= 0 && at + 1 < words.Length && int.TryParse(words[at + 1], CultureInfo.InvariantCulture, out int value) ? value : null;
        }

        private static long Counter(LabNamespace client, string name)
        {
            try
            {
                return client.Counter(name);
            }
            catch (InvalidOperationException)
            {
                return 0;
            }
        }
    }

    /// <summary>
    /// Why the MPTCP connection died, from the server's <c>/mptcp</c> answer once its unicast subflow had settled
    /// (<paramref name="server"/>: <c>mptcp</c>, <c>fallbackReason</c>, <c>state</c>, <c>stateReason</c>,
    /// <c>announced</c>), the probe's own error and the client kernel's <paramref name="client"/> evidence.
    /// </summary>
    public static DemoDiagnosis ForMptcp(LabOptions options, JsonElement server, string? probeError, ClientEvidence client)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(client);
        string state = Text(server, "state") ?? "?";
        string stateReason = Text(server, "stateReason") ?? "";
        string announced = Text(server, "announced") ?? "the unicast address";
        string died = probeError is null ? "" : $" At the flip it died: {probeError}.";

        if (server.TryGetProperty("mptcp", out JsonElement mptcp) && mptcp.ValueKind == JsonValueKind.False)
        {
            string fallback = Text(server, "fallbackReason") ?? "?";
            return new DemoDiagnosis(
                $"the connection fell back to plain TCP (server: mptcp false, {fallback}): the MPTCP option did not survive the path"
                + (options.StripMptcp ? " (the router strips TCP option 30)" : "") + ", so nothing could be announced." + died,
                "let TCP option 30 (MPTCP) through every middlebox between client and server"
                + (options.StripMptcp ? " (in the lab: run without --strip-mptcp)" : "") + "; plain TCP connections survive only with the rescue agent.");
        }

        switch (state)
        {
            case "JoinTimedOut" or "Announced" when client.AddAddrAccepted == 0 && options.Client != LabClientLimits.SubflowEndpoint:
                string received = client.AddAddrReceived > 0 ? $"received {client.AddAddrReceived} ADD_ADDR" : "was sent the ADD_ADDR";
                return new DemoDiagnosis(
                    $"the server announced {announced} (ADD_ADDR) and waited in vain for a subflow to it ({state}). The client's kernel "
                    + $"{received} but its MPTCP limits (add_addr_accepted 0) drop it, so the connection kept one subflow, to the anycast address, "
                    + "which went to the other POP at the flip." + died,
                    "on the client: ip mptcp limits set add_addr_accepted 1 subflows 1 (again at every boot: the limits do not persist; "
                    + "in the lab: --client accept-add-addr, the default).");

            case "JoinTimedOut" or "Announced" when client.JoinSynSent > 0 && client.JoinSynAckReceived == 0:
                return new DemoDiagnosis(
                    $"the client tried to join {announced} ({client.JoinSynSent} MP_JOIN SYN(s) sent) but no answer came back: something on the path "
                    + $"drops TCP to the POP's unicast address ({state}: {stateReason})." + died,
                    $"let TCP to the POPs' unicast addresses and port {PopServer.Port} through the firewalls between client and POP"
                    + (options.Firewall ? " (in the lab: run without --firewall)." : "."));

            case "JoinTimedOut" or "Announced":
                return new DemoDiagnosis(
                    $"the client did not join {announced} within the server's join timeout ({state}: {stateReason}); its kernel received "
                    + $"{client.AddAddrReceived} ADD_ADDR and sent {client.JoinSynSent} MP_JOIN SYN(s)." + died,
                    "on the client: 'mptcp-anycast check --role client' and 'ip mptcp limits show' (add_addr_accepted must be at least 1).");

            case "Failed":
                return new DemoDiagnosis(
                    $"the server could not announce its unicast address ({stateReason})." + died,
                    "on the server: 'mptcp-anycast check --role server', and the POP server's log for the path manager's answer.");

            case "NotAnnounced":
                return new DemoDiagnosis(
                    $"the server announced nothing for this connection ({stateReason})." + died,
                    "on the server: give the transport unicast addresses to announce (MptcpAnycast:UnicastAddresses).");

            default:
                return new DemoDiagnosis(
                    $"the client had joined {announced} ({state}), and still the connection died: {probeError ?? "incomplete or corrupted"}.",
                    "look at the subflows during a run: 'mptcp-anycast lab up', then 'ip netns exec PREFIX-client ss -Mtni' while 'lab flip' moves the route.");
        }
    }

    private static string? Text(JsonElement json, string name) =>
        json.ValueKind == JsonValueKind.Object && json.TryGetProperty(name, out JsonElement v) && v.ValueKind != JsonValueKind.Null ? v.ToString() : null;
}
