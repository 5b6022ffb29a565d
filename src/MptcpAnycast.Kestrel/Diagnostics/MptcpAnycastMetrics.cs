using System.Diagnostics.Metrics;

namespace MptcpAnycast.Kestrel.Diagnostics;

/// <summary>
/// The <c>MptcpAnycast</c> meter (<see cref="MptcpAnycastMeter.Name"/>). Instruments follow OpenTelemetry naming; tags
/// are built only when an instrument has a listener.
/// </summary>
internal sealed class MptcpAnycastMetrics
{
    private readonly Counter<long> _connections;
    private readonly Counter<long> _fallbacks;
    private readonly Counter<long> _announcements;
    private readonly Counter<long> _joins;
    private readonly Histogram<double> _joinDuration;
    private readonly Counter<long> _joinTimeouts;
    private readonly Counter<long> _routeChangesSurvived;
    private readonly Counter<long> _eventsLost;
    private readonly Meter _meter;

    public MptcpAnycastMetrics(IMeterFactory meterFactory)
    {
        Meter meter = meterFactory.Create(MptcpAnycastMeter.Name);
        _meter = meter;
        _connections = meter.CreateCounter<long>("mptcp_anycast.connections", "{connection}",
            "Connections accepted, by kind: mptcp (speaks MPTCP), tcp (no MPTCP offer reached the server, or this host has none), "
            + "tcp_fallback (MPTCP was agreed but the connection fell back to TCP later).");
        _fallbacks = meter.CreateCounter<long>("mptcp_anycast.fallbacks", "{connection}",
            "Connections that are plain TCP, by reason.");
        _announcements = meter.CreateCounter<long>("mptcp_anycast.announcements", "{announcement}",
            "Unicast announcements, by result: sent, failed, skipped (no unicast address fits), rate_limited, closed_before_delay.");
        _joins = meter.CreateCounter<long>("mptcp_anycast.joins", "{subflow}",
            "Client subflows that joined the announced unicast address.");
        _joinDuration = meter.CreateHistogram<double>("mptcp_anycast.join.duration", "s",
            "Time from the announcement to the client's unicast subflow being established.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5] });
        _joinTimeouts = meter.CreateCounter<long>("mptcp_anycast.join.timeouts", "{connection}",
            "Announcements the client did not act on within the join timeout.");
        _routeChangesSurvived = meter.CreateCounter<long>("mptcp_anycast.route_changes_survived", "{subflow}",
            "Anycast subflows lost while the unicast subflow carried the connection on.");
        _eventsLost = meter.CreateCounter<long>("mptcp_anycast.path_manager.events_lost", "{event}",
            "Times path-manager events were lost (kernel ENOBUFS or a full buffer); affected connections are reconciled.");
    }

    /// <summary>
    /// Counts an accepted connection under <c>mptcp.kind</c>: <c>mptcp</c>; <c>tcp</c> when the client did not offer
    /// MPTCP (browsers, plain <c>HttpClient</c>, curl without <c>--mptcp</c>), the option was stripped on the way (the
    /// server then sees a plain TCP SYN), or the listener is plain TCP because this host has no MPTCP;
    /// <c>tcp_fallback</c> when MPTCP was agreed and the connection fell back to TCP later (a middlebox that drops the
    /// option mid-connection, a checksum failure).
    /// </summary>
    public void Connection(MptcpFallbackReason reason)
    {
        if (_connections.Enabled)
        {
            _connections.Add(1, new KeyValuePair<string, object?>("mptcp.kind", reason switch
            {
                MptcpFallbackReason.None => "mptcp",
                MptcpFallbackReason.PlainTcpSocket => "tcp",
                _ => "tcp_fallback",
            }));
        }
    }

    public void Fallback(MptcpFallbackReason reason)
    {
        if (_fallbacks.Enabled)
        {
            _fallbacks.Add(1, new KeyValuePair<string, object?>("mptcp.fallback_reason", reason switch
            {
                MptcpFallbackReason.PlainTcpSocket => "plain_tcp",
                MptcpFallbackReason.FellBackToTcp => "fell_back",
                _ => "other",
            }));
        }
    }

    public void Announcement(string result)
    {
        if (_announcements.Enabled)
        {
            _announcements.Add(1, new KeyValuePair<string, object?>("mptcp.announcement.result", result));
        }
    }

    public void Joined(TimeSpan latency)
    {
        _joins.Add(1);
        if (_joinDuration.Enabled)
        {
            _joinDuration.Record(latency.TotalSeconds);
        }
    }

    public void JoinTimedOut() => _joinTimeouts.Add(1);

    public void RouteChangeSurvived() => _routeChangesSurvived.Add(1);

    public void EventsLost() => _eventsLost.Add(1);

    /// <summary>Publishes <c>mptcp_anycast.connections.tracked</c>, read from <paramref name="count"/> whenever it is observed.</summary>
    public void ObserveTrackedConnections(Func<int> count) =>
        _meter.CreateObservableGauge("mptcp_anycast.connections.tracked", count, "{connection}",
            "MPTCP connections the transport tracks now: announced (or to be announced) and not yet closed, and closed ones whose join may still be reported (for at most the join timeout). Returns to 0 once they have closed; growth without connections means a leak.");
}
