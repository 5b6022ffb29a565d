using System.Net;
using Microsoft.Extensions.Logging;

namespace MptcpAnycast.Kestrel.Diagnostics;

/// <summary>The transport's log messages. Event ids are stable: operators alert on them.</summary>
internal static partial class MptcpAnycastLog
{
    [LoggerMessage(1, LogLevel.Warning, "MPTCP is not available, serving plain TCP: {Reason}")]
    public static partial void MptcpUnavailable(ILogger logger, string reason);

    [LoggerMessage(2, LogLevel.Warning, "{Setting}: {Why} Fix: {Fix}, or set MptcpAnycast:ConfigureHost = true.")]
    public static partial void CFlagNotSet(ILogger logger, string setting, string why, string fix);

    [LoggerMessage(3, LogLevel.Information, "Set net.mptcp.allow_join_initial_addr_port = 0 (the C flag) because ConfigureHost = true.")]
    public static partial void CFlagConfigured(ILogger logger);

    [LoggerMessage(4, LogLevel.Information, "MPTCP anycast transport: mode {Mode}, announcing {Unicast} on {Anycast}, announce on {AnnounceOn}, after join {AfterJoin}.")]
    public static partial void Started(ILogger logger, AnnouncementMode mode, string unicast, string anycast, AnnounceOn announceOn, AfterJoinPolicy afterJoin);

    [LoggerMessage(5, LogLevel.Debug, "Connection {ConnectionId}: announced {UnicastEndPoint} (token {Token:x8}).")]
    public static partial void Announced(ILogger logger, string connectionId, IPEndPoint unicastEndPoint, uint token);

    [LoggerMessage(6, LogLevel.Warning, "Connection {ConnectionId}: announcing {UnicastEndPoint} failed; the connection stays single-path.")]
    public static partial void AnnounceFailed(ILogger logger, string connectionId, IPEndPoint unicastEndPoint, Exception exception);

    [LoggerMessage(7, LogLevel.Debug, "Connection {ConnectionId}: the client joined {UnicastEndPoint} after {LatencyMs:F2} ms.")]
    public static partial void Joined(ILogger logger, string connectionId, IPEndPoint unicastEndPoint, double latencyMs);

    [LoggerMessage(8, LogLevel.Debug, "Connection {ConnectionId}: no join to {UnicastEndPoint} within {Timeout}.")]
    public static partial void JoinTimedOut(ILogger logger, string connectionId, IPEndPoint unicastEndPoint, TimeSpan timeout);

    [LoggerMessage(9, LogLevel.Warning, "The path manager is unavailable; announcements are paused and connections stay single-path until it recovers.")]
    public static partial void PathManagerUnavailable(ILogger logger, Exception? exception);

    [LoggerMessage(10, LogLevel.Information, "The path manager is available again; announcements resume.")]
    public static partial void PathManagerRecovered(ILogger logger);

    [LoggerMessage(11, LogLevel.Warning, "Path-manager events were lost; reconciling {Count} connection(s) from their sockets.")]
    public static partial void EventsLost(ILogger logger, int count);

    [LoggerMessage(12, LogLevel.Debug, "Connection {ConnectionId}: after-join policy {Policy} on the anycast subflow {Local} <-> {Remote} failed.")]
    public static partial void AfterJoinFailed(ILogger logger, string connectionId, AfterJoinPolicy policy, IPEndPoint local, IPEndPoint remote, Exception exception);

    [LoggerMessage(13, LogLevel.Information, "Created kernel signal endpoint {Address} (id {Id}) because ConfigureHost = true; it is removed at shutdown.")]
    public static partial void EndpointCreated(ILogger logger, string address, byte id);

    [LoggerMessage(14, LogLevel.Information, "Removed kernel endpoint {Address} (id {Id}) created at start-up.")]
    public static partial void EndpointRemoved(ILogger logger, string address, byte id);

    [LoggerMessage(15, LogLevel.Warning, "Cannot follow path-manager events ({Reason}); join state is read from the sockets instead.")]
    public static partial void EventsUnavailable(ILogger logger, string reason);

    [LoggerMessage(16, LogLevel.Warning, "No CAP_NET_ADMIN: {What}. Grant it (systemd AmbientCapabilities=CAP_NET_ADMIN) or use Kernel mode with the endpoint created beforehand.")]
    public static partial void NoNetAdmin(ILogger logger, string what);

    [LoggerMessage(17, LogLevel.Debug, "Listening for unicast joins on {EndPoint}.")]
    public static partial void JoinListener(ILogger logger, EndPoint endPoint);

    [LoggerMessage(18, LogLevel.Debug, "Connection reset in the accept backlog of {EndPoint}.")]
    public static partial void ConnectionReset(ILogger logger, EndPoint endPoint);

    [LoggerMessage(19, LogLevel.Warning, "AfterJoin = {Policy} needs per-connection subflow commands, which only the userspace path manager has; in Kernel mode both subflows stay active (KeepBoth).")]
    public static partial void AfterJoinNeedsUserspace(ILogger logger, AfterJoinPolicy policy);

    [LoggerMessage(20, LogLevel.Warning, "Removed {Count} kernel endpoint(s) left behind by process {Pid}, which is no longer running.")]
    public static partial void LeftoversRemoved(ILogger logger, int count, int pid);

    [LoggerMessage(21, LogLevel.Information, "Following path-manager events again after {Attempts} attempt(s) and {Gap} without them; reconciling the connections tracked meanwhile.")]
    public static partial void EventsResumed(ILogger logger, int attempts, TimeSpan gap);

    [LoggerMessage(22, LogLevel.Debug, "Subscribing to path-manager events again failed (attempt {Attempt}): {Reason}; next try in {Delay}.")]
    public static partial void ResubscribeFailed(ILogger logger, int attempt, string reason, TimeSpan delay);

    [LoggerMessage(23, LogLevel.Warning, "AnnounceDelay = {Delay} needs the userspace path manager; in Kernel mode the kernel announces as soon as a connection is established.")]
    public static partial void AnnounceDelayNeedsUserspace(ILogger logger, TimeSpan delay);

    [LoggerMessage(24, LogLevel.Error, "The control path failed on {Work} (connection {ConnectionId}); it goes on with the next item.")]
    public static partial void ControlWorkFailed(ILogger logger, Control.ControlWorkKind work, string? connectionId, Exception exception);

    [LoggerMessage(25, LogLevel.Warning, "Nothing is announced: {Why}. MPTCP connections are served single-path and do not survive an anycast route change. "
        + "Set MptcpAnycast:UnicastAddresses:0 to this server's own unicast address, e.g. 192.0.2.10 (command line --MptcpAnycast:UnicastAddresses:0=192.0.2.10, "
        + "environment MptcpAnycast__UnicastAddresses__0=192.0.2.10), or set MptcpAnycast:Mode = None to serve MPTCP without announcing and without this warning.")]
    public static partial void NothingToAnnounce(ILogger logger, string why);

    [LoggerMessage(26, LogLevel.Warning, "AnnounceOn = Demand needs the userspace path manager; Mode = Auto chose Kernel mode, in which the kernel announces on every connection, so AnnounceAsync changes nothing.")]
    public static partial void AnnounceOnDemandNeedsUserspace(ILogger logger);

    [LoggerMessage(27, LogLevel.Warning, "AnnouncementsPerClientPerMinute = {Limit} needs the userspace path manager; Mode = Auto chose Kernel mode, in which the kernel announces on every connection and no limit applies.")]
    public static partial void RateLimitNeedsUserspace(ILogger logger, int limit);
}
