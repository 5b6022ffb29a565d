namespace MptcpAnycast.Kestrel;

/// <summary>
/// The meter the transport (and the rescue agent) publish their instruments on, for exporters and
/// <c>dotnet-counters</c>: <c>services.AddOpenTelemetry().WithMetrics(m =&gt; m.AddMeter(MptcpAnycastMeter.Name))</c>,
/// or <c>dotnet-counters monitor --counters MptcpAnycast</c>.
/// </summary>
public static class MptcpAnycastMeter
{
    /// <summary>The meter's name: <c>MptcpAnycast</c>. Its instruments are named <c>mptcp_anycast.*</c>.</summary>
    public const string Name = "MptcpAnycast";
}
