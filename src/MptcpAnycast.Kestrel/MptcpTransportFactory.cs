using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MptcpAnycast.Kestrel.Control;
using MptcpAnycast.Kestrel.Diagnostics;
using MptcpAnycast.Kestrel.Health;
using MptcpAnycast.Kestrel.Hosting;
using MptcpAnycast.Kestrel.Transport;

namespace MptcpAnycast.Kestrel;

/// <summary>
/// Kestrel's transport for servers on an anycast address: binds MPTCP listen sockets for IP endpoints, hands accepted
/// sockets to Kestrel's own socket connection code, and announces the server's unicast address on each connection.
/// Registered by <c>UseMptcpAnycast</c>; other endpoint kinds (Unix sockets, named pipes) stay with their transports.
/// </summary>
public sealed class MptcpTransportFactory : IConnectionListenerFactory, IConnectionListenerFactorySelector, IAsyncDisposable
{
    private readonly Lazy<MptcpAnycastSettings> _settings;
    private readonly SocketTransportOptions _socketOptions;
    private readonly ILogger _logger;
    private readonly MptcpAnycastMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly SocketConnectionContextFactory _contextFactory;
    private readonly SemaphoreSlim _startGate = new(1, 1);
    private readonly Dictionary<IPEndPoint, JoinListener> _joinListeners = [];
    private readonly Func<CancellationToken, Task<HostPreparation>> _prepare;
    private readonly ControlPathTuning _tuning;
    private HostPreparation? _preparation;
    private ControlPath? _control;
    private int _disposed;

    /// <summary>
    /// Creates the factory. The options are read at the first bind: <c>UseMptcpAnycast</c> has the host validate them
    /// when it starts (<c>ValidateOnStart</c>), so a bad setting ends start-up before Kestrel binds anything, with one
    /// <see cref="OptionsValidationException"/> naming it. Kestrel creates its transports while the application is
    /// built, and the options are not read that early. A factory made by hand is checked by the same rules at its
    /// first bind (<see cref="MptcpAnycastConfigurationException"/>).
    /// </summary>
    public MptcpTransportFactory(IOptions<MptcpAnycastOptions> options, IOptions<SocketTransportOptions> socketOptions,
        ILoggerFactory loggerFactory, IMeterFactory meterFactory)
        : this(new Lazy<MptcpAnycastSettings>(() => MptcpAnycastSettings.Validate(options.Value)), socketOptions.Value, loggerFactory, meterFactory,
            TimeProvider.System, prepare: null, tuning: null)
    {
        ArgumentNullException.ThrowIfNull(options);
    }

    internal MptcpTransportFactory(MptcpAnycastSettings settings, SocketTransportOptions socketOptions, ILoggerFactory loggerFactory,
        IMeterFactory meterFactory, TimeProvider time, Func<CancellationToken, Task<HostPreparation>>? prepare, ControlPathTuning? tuning = null)
        : this(new Lazy<MptcpAnycastSettings>(settings), socketOptions, loggerFactory, meterFactory, time, prepare, tuning)
    {
    }

    private MptcpTransportFactory(Lazy<MptcpAnycastSettings> settings, SocketTransportOptions socketOptions, ILoggerFactory loggerFactory,
        IMeterFactory meterFactory, TimeProvider time, Func<CancellationToken, Task<HostPreparation>>? prepare, ControlPathTuning? tuning)
    {
        _tuning = tuning ?? ControlPathTuning.Default;
        _settings = settings;
        _socketOptions = socketOptions;
        _logger = loggerFactory.CreateLogger("MptcpAnycast.Kestrel");
        _metrics = new MptcpAnycastMetrics(meterFactory);
        _time = time;
        _prepare = prepare ?? (ct => HostPreparation.PrepareAsync(_settings.Value, _tuning.CommandTimeout, _logger, ct));
        _contextFactory = new SocketConnectionContextFactory(
            new SocketConnectionFactoryOptions
            {
                IOQueueCount = socketOptions.IOQueueCount,
                WaitForDataBeforeAllocatingBuffer = socketOptions.WaitForDataBeforeAllocatingBuffer,
                MaxReadBufferSize = socketOptions.MaxReadBufferSize,
                MaxWriteBufferSize = socketOptions.MaxWriteBufferSize,
                UnsafePreferInlineScheduling = socketOptions.UnsafePreferInlineScheduling,
            },
            loggerFactory.CreateLogger("Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets"));
    }

    /// <summary>The mode in effect once the first endpoint is bound (Auto resolved; None when the host has no MPTCP).</summary>
    internal AnnouncementMode? EffectiveMode => _preparation?.Mode;

    /// <summary>What the health check reports: start-up's findings and the control path's state now.</summary>
    internal TransportStatus GetStatus()
    {
        ControlPath? control = Volatile.Read(ref _control);
        HostPreparation? preparation = Volatile.Read(ref _preparation);
        if (control is null || preparation is null)
        {
            return new TransportStatus { Started = false };
        }

        return new TransportStatus
        {
            Started = true,
            Mode = preparation.Mode,
            MptcpProblem = preparation.MptcpProblem,
            AnnouncementsOff = control.AnnouncementsOffReason,
            AnnouncementsPaused = control.IsAnnouncementPaused,
            ExpectsEvents = control.ExpectsEvents,
            FollowingEvents = control.IsFollowingEvents,
            NothingToAnnounce = preparation.NothingToAnnounce,
            HostWarning = preparation.HostWarning,
            Announcing = DescribeUnicast(_settings.Value.Unicast, preparation.Mode),
            TrackedConnections = control.TrackedConnections,
        };
    }

    internal ControlPath? Control => _control;

    /// <inheritdoc />
    public bool CanBind(EndPoint endpoint) => endpoint is IPEndPoint;

    /// <inheritdoc />
    public async ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
    {
        if (endpoint is not IPEndPoint ip)
        {
            throw new NotSupportedException($"The MPTCP transport binds IP endpoints only, not {endpoint.GetType().Name} '{endpoint}'.");
        }

        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        ControlPath control = await EnsureStartedAsync(cancellationToken).ConfigureAwait(false);

        Socket listenSocket = CreateListenSocket(ip);
        var joins = new List<JoinListener>();
        try
        {
            if (control.Mode == AnnouncementMode.Userspace)
            {
                AddJoinListeners((IPEndPoint)listenSocket.LocalEndPoint!, control, joins);
            }
        }
        catch
        {
            listenSocket.Dispose();
            joins.ForEach(j => j.Release());
            throw;
        }

        return new MptcpConnectionListener(listenSocket, _contextFactory, control, _logger, _time, _socketOptions.NoDelay, joins);
    }

    private Socket CreateListenSocket(IPEndPoint endpoint)
    {
        MptcpFallback fallback = _preparation!.MptcpSupported ? MptcpFallback.None : MptcpFallback.Tcp;
        Socket socket = MptcpSocket.Create(endpoint.AddressFamily, fallback);
        try
        {
            if (endpoint.Address.Equals(IPAddress.IPv6Any))
            {
                socket.DualMode = true; // as Kestrel: [::] serves IPv4 too
            }

            try
            {
                socket.Bind(endpoint);
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse)
            {
                throw new AddressInUseException(e.Message, e);
            }

            socket.Listen(_socketOptions.Backlog);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The kernel accepts a join to the unicast address only through an MPTCP listener on exactly that address and
    /// port (or a wildcard one on that port). Adds one for every announced unicast end point this endpoint does not cover.
    /// </summary>
    private void AddJoinListeners(IPEndPoint bound, ControlPath control, List<JoinListener> joins)
    {
        foreach (IPEndPoint? unicast in new[] { control.Policy.UnicastV4, control.Policy.UnicastV6 })
        {
            if (unicast is null)
            {
                continue;
            }

            var target = new IPEndPoint(unicast.Address, unicast.Port == 0 ? bound.Port : unicast.Port);
            if (Covers(bound, target))
            {
                continue;
            }

            lock (_joinListeners)
            {
                if (_joinListeners.TryGetValue(target, out JoinListener? existing) && existing.TryAddReference())
                {
                    joins.Add(existing);
                    continue;
                }

                try
                {
                    var join = new JoinListener(target, _socketOptions.Backlog, _logger, j =>
                    {
                        lock (_joinListeners)
                        {
                            _joinListeners.Remove(j.EndPoint);
                        }
                    });
                    _joinListeners[target] = join;
                    joins.Add(join);
                }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse)
                {
                    // Another listener (a wildcard Kestrel endpoint, or an in-kernel endpoint listener) covers it.
                    MptcpAnycastLog.JoinListener(_logger, target);
                }
            }
        }
    }

    private static bool Covers(IPEndPoint bound, IPEndPoint target)
    {
        if (bound.Port != target.Port)
        {
            return false;
        }

        if (bound.Address.Equals(IPAddress.IPv6Any))
        {
            return true; // dual-mode
        }

        if (bound.Address.Equals(IPAddress.Any))
        {
            return target.AddressFamily == AddressFamily.InterNetwork;
        }

        return bound.Address.Equals(target.Address);
    }

    private async ValueTask<ControlPath> EnsureStartedAsync(CancellationToken cancellationToken)
    {
        if (_control is ControlPath ready)
        {
            return ready;
        }

        await _startGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_control is null)
            {
                HostPreparation preparation = await _prepare(cancellationToken).ConfigureAwait(false);
                _preparation = preparation;
                MptcpAnycastSettings settings = _settings.Value;
                var control = new ControlPath(settings, preparation.Mode, preparation.PathManager, preparation.PathManagerProblem,
                    _logger, _metrics, _time, _tuning);
                control.Start();
                Volatile.Write(ref _control, control);
                MptcpAnycastLog.Started(_logger, preparation.Mode,
                    DescribeUnicast(settings.Unicast, preparation.Mode),
                    settings.Anycast.Count == 0 ? "every address" : string.Join(", ", settings.Anycast),
                    settings.AnnounceOn, settings.AfterJoin);
                if (preparation.Mode == AnnouncementMode.Kernel && settings.AfterJoin != AfterJoinPolicy.KeepBoth)
                {
                    MptcpAnycastLog.AfterJoinNeedsUserspace(_logger, settings.AfterJoin);
                }

                // Validate refuses these with Mode = Kernel; with Mode = Auto they are known only now.
                if (preparation.Mode == AnnouncementMode.Kernel && settings.AnnounceDelay > TimeSpan.Zero)
                {
                    MptcpAnycastLog.AnnounceDelayNeedsUserspace(_logger, settings.AnnounceDelay);
                }

                if (preparation.Mode == AnnouncementMode.Kernel && settings.AnnounceOn == AnnounceOn.Demand)
                {
                    MptcpAnycastLog.AnnounceOnDemandNeedsUserspace(_logger);
                }

                if (preparation.Mode == AnnouncementMode.Kernel && settings.AnnouncementsPerClientPerMinute > 0)
                {
                    MptcpAnycastLog.RateLimitNeedsUserspace(_logger, settings.AnnouncementsPerClientPerMinute);
                }
            }

            return _control;
        }
        finally
        {
            _startGate.Release();
        }
    }

    /// <summary>
    /// The unicast end points as the start-up log shows them: a port of 0 means "the port the connection came in on",
    /// which the log says in words.
    /// </summary>
    internal static string DescribeUnicast(IReadOnlyList<IPEndPoint> unicast, AnnouncementMode mode) =>
        unicast.Count == 0 || mode == AnnouncementMode.None
            ? "nothing"
            : string.Join(", ", unicast.Select(static u => u.Port == 0 ? $"{u.Address} (on the port of each connection)" : u.ToString()));

    /// <summary>Stops announcing, removes the kernel endpoints this process created, and frees Kestrel's buffers.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        if (_preparation is { EndpointOwner: NetlinkPathManager owner, CreatedEndpoints.Count: > 0 })
        {
            await HostPreparation.CleanUpAsync(owner.Client, _preparation.CreatedEndpoints, _logger).ConfigureAwait(false);
        }

        if (_control is not null)
        {
            await _control.DisposeAsync().ConfigureAwait(false);
        }

        _contextFactory.Dispose();
        _startGate.Dispose();
    }
}
