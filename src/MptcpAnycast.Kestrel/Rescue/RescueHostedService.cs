using System.Diagnostics.Metrics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MptcpAnycast.Kestrel.Diagnostics;
using MptcpAnycast.Rescue;

namespace MptcpAnycast.Kestrel.Rescue;

/// <summary>
/// Runs the rescue agent for the life of the host. The settings were checked when the host started
/// (<see cref="RescueOptionsValidator"/>); what only binding finds (the lookup port in use, a unicast address this host
/// lacks) stops start-up here with the setting named; missing privileges or kernel support leave one warning and the
/// host serves without rescue.
/// </summary>
internal sealed class RescueHostedService(IOptions<RescueOptions> options, ILogger<RescueAgent> logger, IMeterFactory meters, IConfiguration? configuration = null)
    : IHostedService, IDisposable
{
    private RescueAgent? _agent;
    private Meter? _meter;
    private IReadOnlyDictionary<string, long>? _counters;
    private long _countersRead;

    public RescueAgent? Agent => _agent;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        RescueOptions value = options.Value;
        if (RescueOptionsBinding.SetKeys(value, configuration?.GetSection(RescueOptions.SectionName)).Count == 0)
        {
            RescueLog.NotConfigured(logger, RescueOptions.SectionName);
            return Task.CompletedTask;
        }

        if (value.Peers is not { Count: > 0 })
        {
            RescueLog.NoPeers(logger, RescueOptions.SectionName);
        }

        try
        {
            _agent = RescueAgent.Start(value, report => RescueLog.Write(logger, report));
        }
        catch (RescueDataplaneException e)
        {
            RescueLog.Unavailable(logger, e.Message, e);
            return Task.CompletedTask;
        }

        _meter = meters.Create(MptcpAnycastMeter.Name);
        RescueAgent agent = _agent;
        _meter.CreateObservableCounter("mptcp_anycast.rescue.tunnelled", () => Counter(agent, "program.tunnelled"), "{packet}",
            "Segments this POP sent on to the POP that owns their connection.");
        _meter.CreateObservableCounter("mptcp_anycast.rescue.decapsulated", () => Counter(agent, "program.decapsulated"), "{packet}",
            "Segments of this POP's connections that another POP sent here.");
        _meter.CreateObservableCounter("mptcp_anycast.rescue.misses", () => Counter(agent, "program.miss"), "{packet}",
            "Segments of connections this POP does not own and whose owner was not known yet.");
        _meter.CreateObservableCounter("mptcp_anycast.rescue.rescued", () => Counter(agent, "lookups.found"), "{connection}",
            "Connections whose owner was found and that are tunnelled to it.");
        _meter.CreateObservableCounter("mptcp_anycast.rescue.resets", () => Counter(agent, "lookups.resets"), "{connection}",
            "Connections that no POP owned: the client was sent a RST.");
        _meter.CreateObservableCounter("mptcp_anycast.rescue.peer_messages_rejected", () => Counter(agent, "peers.rejected_total"), "{message}",
            "Lookup-protocol messages dropped as bad (MAC, replay, size, unknown peer).");
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        Dispose();
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        _meter?.Dispose();
        _agent?.Dispose();
        _agent = null;
    }

    // One collection reads every instrument in turn: read the program's and the agent's counters once for all of them.
    private long Counter(RescueAgent agent, string name)
    {
        long now = Environment.TickCount64;
        if (_counters is null || now - Volatile.Read(ref _countersRead) > 500)
        {
            _counters = agent.ReadCounters();
            Volatile.Write(ref _countersRead, now);
        }

        return _counters.TryGetValue(name, out long value) ? value : 0;
    }
}
