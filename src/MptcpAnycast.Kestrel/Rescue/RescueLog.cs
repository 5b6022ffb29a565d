using Microsoft.Extensions.Logging;

namespace MptcpAnycast.Kestrel.Rescue;

/// <summary>The rescue agent's log messages (event ids 40-49, after the transport's).</summary>
internal static partial class RescueLog
{
    [LoggerMessage(40, LogLevel.Information, "{Message}")]
    public static partial void Started(ILogger logger, string message);

    [LoggerMessage(41, LogLevel.Information, "{Message}")]
    public static partial void Stopped(ILogger logger, string message);

    [LoggerMessage(42, LogLevel.Debug, "Rescued: {Message}")]
    public static partial void FlowRescued(ILogger logger, string message);

    [LoggerMessage(43, LogLevel.Debug, "Reset: {Message}")]
    public static partial void FlowReset(ILogger logger, string message);

    [LoggerMessage(44, LogLevel.Warning, "Rescue: {Message}")]
    public static partial void Failed(ILogger logger, string message, Exception? exception);

    [LoggerMessage(45, LogLevel.Warning,
        "The rescue agent cannot run, so plain TCP connections on this host die when the anycast route moves away (MPTCP ones survive as before): {Reason}")]
    public static partial void Unavailable(ILogger logger, string reason, Exception exception);

    [LoggerMessage(46, LogLevel.Warning,
        "Rescue is not configured ({Section} is empty), so plain TCP connections die when the anycast route moves; set {Section}:Name, :Interface, :AnycastAddresses, :UnicastIPv4 and :Peers (docs/rescue.md).")]
    public static partial void NotConfigured(ILogger logger, string section);

    [LoggerMessage(47, LogLevel.Warning,
        "{Section}:Peers is empty: the rescue agent runs but can rescue no connection; a segment of a connection this POP does not own is answered with a RST, as without rescue. List the other POPs that serve the same anycast addresses (docs/rescue.md).")]
    public static partial void NoPeers(ILogger logger, string section);

    public static void Write(ILogger logger, MptcpAnycast.Rescue.RescueEvent report)
    {
        switch (report.Kind)
        {
            case MptcpAnycast.Rescue.RescueEventKind.Started: Started(logger, report.Message); break;
            case MptcpAnycast.Rescue.RescueEventKind.Stopped: Stopped(logger, report.Message); break;
            case MptcpAnycast.Rescue.RescueEventKind.FlowRescued: FlowRescued(logger, report.Message); break;
            case MptcpAnycast.Rescue.RescueEventKind.FlowReset: FlowReset(logger, report.Message); break;
            default: Failed(logger, report.Message, report.Exception); break;
        }
    }
}
