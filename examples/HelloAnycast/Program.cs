using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using MptcpAnycast;
using MptcpAnycast.Kestrel;

// HelloAnycast: the smallest ASP.NET Core app on the MPTCP anycast transport.
// Run: dotnet run --project examples/HelloAnycast -- --urls http://0.0.0.0:8080 --MptcpAnycast:UnicastAddresses:0=192.0.2.10
// The content root is the app's own folder, so that its appsettings.json applies from whatever directory it is started
// (run from the repository root it was missed, and every request was logged at Information).
WebApplicationBuilder builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });

// --Transport anycast (default): the MptcpAnycast transport. The other two exist for the load comparison in
// benchmarks/: "sockets" is Kestrel's own TCP transport, "mptcp-listen" is Kestrel's transport with a bare MPTCP
// listen socket (nothing announced): the floor that the kernel's MPTCP sets.
string transport = builder.Configuration["Transport"] ?? "anycast";
switch (transport)
{
    case "anycast":
        builder.WebHost.UseMptcpAnycast();
        break;
    case "mptcp-listen":
        builder.WebHost.UseSockets(o => o.CreateBoundListenSocket = endPoint =>
        {
            var ip = (System.Net.IPEndPoint)endPoint;
            System.Net.Sockets.Socket socket = MptcpSocket.Create(ip.AddressFamily);
            if (ip.Address.Equals(System.Net.IPAddress.IPv6Any))
            {
                socket.DualMode = true;
            }

            socket.Bind(ip);
            return socket;
        });
        break;
    case "sockets":
        break;
    default:
        Console.Error.WriteLine($"--Transport must be anycast, mptcp-listen or sockets (got '{transport}')");
        return 2;
}

WebApplication app = builder.Build();

string pop = app.Configuration["Pop"] ?? Environment.MachineName;

app.Use(async (context, next) =>
{
    context.Response.Headers["X-Pop"] = pop;
    await next(context);
});

app.MapGet("/", () => $"Hello from {pop} over MptcpAnycast\n");

app.MapGet("/mptcp", (HttpContext context) =>
{
    IMptcpConnectionFeature? feature = context.Features.Get<IMptcpConnectionFeature>();
    if (feature is null)
    {
        return Results.Json(new { pop, transport = "not MptcpAnycast (another transport served this connection)" });
    }

    MptcpConnectionInfo info = feature.GetConnectionInfo();
    return Results.Json(new
    {
        pop,
        mptcp = feature.IsMptcp,
        fallbackReason = feature.FallbackReason.ToString(),
        token = feature.Token.ToString("x8", CultureInfo.InvariantCulture),
        state = feature.State.ToString(),
        stateReason = feature.StateReason,
        announced = feature.AnnouncedEndPoint?.ToString(),
        acceptedAt = feature.AcceptedAt,
        announcedAt = feature.AnnouncedAt,
        joinedAt = feature.JoinedAt,
        subflows = feature.GetSubflows().Select(s => new { local = s.Local.ToString(), remote = s.Remote.ToString() }),
        addAddrSignal = info.AddAddrSignal,
        protocol = context.Request.Protocol,
    });
});

// The MptcpAnycast meter's values now, read in-process: cheap enough for a soak script to poll.
var stats = new MptcpStats();
app.Lifetime.ApplicationStopped.Register(stats.Dispose);
app.MapGet("/mptcp/stats", () => Results.Json(stats.Read()));

app.MapPost("/mptcp/announce", async (HttpContext context) =>
{
    IMptcpConnectionFeature? feature = context.Features.Get<IMptcpConnectionFeature>();
    bool announced = feature is not null && await feature.AnnounceAsync(context.RequestAborted);
    return Results.Json(new { announced, state = feature?.State.ToString(), stateReason = feature?.StateReason });
});

app.MapGet("/bytes/{n:long}", async (long n, HttpContext context) =>
{
    if (n is < 0 or > 1L << 34)
    {
        return Results.BadRequest($"n must be from 0 to {1L << 34}, got {n}\n");
    }

    context.Response.ContentType = "application/octet-stream";
    context.Response.ContentLength = n;
    await StreamPattern.WriteAsync(context.Response.Body, n, bytesPerSecond: 0, context.RequestAborted);
    return Results.Empty;
});

app.MapGet("/stream", async (double? seconds, long? rate, HttpContext context) =>
{
    double s = seconds ?? 10;
    long r = rate ?? 65536;
    if (s is <= 0 or > 3600 || r is <= 0 or > 1L << 30)
    {
        return Results.BadRequest("seconds must be in (0, 3600] and rate in (0, 2^30] bytes per second\n");
    }

    long total = (long)(s * r);
    context.Response.ContentType = "application/octet-stream";
    context.Response.ContentLength = total;
    await StreamPattern.WriteAsync(context.Response.Body, total, r, context.RequestAborted);
    return Results.Empty;
});

app.Run();
return 0;

/// <summary>
/// The MptcpAnycast meter's counters (totals since start, one entry per instrument and tag value, e.g.
/// <c>mptcp_anycast.announcements{mptcp.announcement.result=sent}</c>) and gauges (the value now, e.g.
/// <c>mptcp_anycast.connections.tracked</c>), collected with a <see cref="MeterListener"/>. Histograms are left out.
/// </summary>
internal sealed class MptcpStats : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<string, long> _values = new();
    private readonly ConcurrentDictionary<(string Name, string Tag, object? Value), string> _keys = new(); // no string built per measurement
    private readonly Lock _observing = new();

    public MptcpStats()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == "MptcpAnycast" && instrument is Counter<long> or ObservableGauge<int>)
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
            _values.AddOrUpdate(Key(instrument, tags), value, (_, total) => total + value));
        _listener.SetMeasurementEventCallback<int>((instrument, value, _, _) => _values[instrument.Name] = value);
        _listener.Start();
    }

    /// <summary>Every value, by name; gauges are observed now.</summary>
    public SortedDictionary<string, long> Read()
    {
        lock (_observing)
        {
            _listener.RecordObservableInstruments();
            return new SortedDictionary<string, long>(_values, StringComparer.Ordinal);
        }
    }

    public void Dispose() => _listener.Dispose();

    private string Key(Instrument instrument, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        if (tags.IsEmpty)
        {
            return instrument.Name;
        }

        if (tags.Length == 1)
        {
            return _keys.GetOrAdd((instrument.Name, tags[0].Key, tags[0].Value), static k => $"{k.Name}{{{k.Tag}={k.Value}}}");
        }

        var key = new System.Text.StringBuilder(instrument.Name).Append('{');
        foreach (KeyValuePair<string, object?> tag in tags)
        {
            key.Append(tag.Key).Append('=').Append(tag.Value).Append(',');
        }

        key[^1] = '}';
        return key.ToString();
    }
}

/// <summary>The deterministic body of /bytes and /stream: byte i is i mod 251, so a lost or repeated chunk shows.</summary>
internal static class StreamPattern
{
    public static async Task WriteAsync(Stream body, long total, long bytesPerSecond, CancellationToken cancellationToken)
    {
        const int Chunk = 251 * 64; // a multiple of 251: every chunk has the same contents
        byte[] buffer = new byte[Chunk];
        for (int i = 0; i < buffer.Length; i++)
        {
            buffer[i] = (byte)(i % 251);
        }

        var clock = System.Diagnostics.Stopwatch.StartNew();
        long sent = 0;
        int piece = bytesPerSecond > 0 ? (int)Math.Clamp(bytesPerSecond / 100, 1, Chunk) : Chunk; // ~100 writes a second when paced
        while (sent < total)
        {
            int n = (int)Math.Min(piece, total - sent);
            int offset = (int)(sent % 251);
            // Start inside the repeating pattern at the right phase.
            int available = Chunk - offset;
            n = Math.Min(n, available);
            await body.WriteAsync(buffer.AsMemory(offset, n), cancellationToken);
            await body.FlushAsync(cancellationToken);
            sent += n;
            if (bytesPerSecond > 0)
            {
                TimeSpan due = TimeSpan.FromSeconds((double)sent / bytesPerSecond);
                TimeSpan wait = due - clock.Elapsed;
                if (wait > TimeSpan.Zero)
                {
                    await Task.Delay(wait, cancellationToken);
                }
            }
        }
    }
}
