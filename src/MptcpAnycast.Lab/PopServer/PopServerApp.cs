using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Configuration.Json;
using Microsoft.Extensions.Configuration.Memory;
using Microsoft.Extensions.Hosting;
using MptcpAnycast.Kestrel;

namespace MptcpAnycast.Lab;

/// <summary>
/// The lab's POP server, run by <c>mptcp-anycast lab serve [OPTIONS]</c> inside a POP's namespace: ASP.NET Core on the
/// MptcpAnycast transport (or, for comparisons, Kestrel's own transport), with the endpoints the lab, its tests and the
/// benchmarks use. Its options are ASP.NET Core configuration from the command line (<c>--Key value</c> or
/// <c>--Key=value</c>): <c>--urls</c>, <c>--Pop NAME</c>, <c>--Transport anycast|mptcp-listen|sockets</c>, and the
/// sections <c>MptcpAnycast:</c> (the transport's options), <c>Logging:</c> and <c>Kestrel:</c>.
/// </summary>
public static class PopServerApp
{
    /// <summary>The transports <c>--Transport</c> takes.</summary>
    public static readonly IReadOnlyList<string> Transports = ["anycast", "mptcp-listen", "sockets"];

    private static readonly string[] Keys = ["urls", "Pop", "Transport"];
    private static readonly string[] Sections = ["MptcpAnycast:", "Logging:", "Kestrel:"];

    /// <summary>What the server has without options: the log levels of the sample's appsettings.json, so that nothing depends on a file.</summary>
    private static readonly Dictionary<string, string?> Defaults = new()
    {
        ["Logging:LogLevel:Default"] = "Information",
        ["Logging:LogLevel:Microsoft.AspNetCore"] = "Warning",
        ["Logging:LogLevel:MptcpAnycast"] = "Information",
    };

    /// <summary>
    /// Checks the command line before anything starts: every word is an option <c>--Key value</c> or <c>--Key=value</c>
    /// with a key the server knows, and <c>--Transport</c> names a transport. Returns the problem, naming the word, or null.
    /// </summary>
    public static string? CheckArguments(IReadOnlyList<string> args)
    {
        ArgumentNullException.ThrowIfNull(args);
        for (int i = 0; i < args.Count; i++)
        {
            string word = args[i];
            if (!word.StartsWith("--", StringComparison.Ordinal) || word.Length == 2)
            {
                return $"'{word}' is not an option: the POP server takes --Key value or --Key=value";
            }

            int equals = word.IndexOf('=', StringComparison.Ordinal);
            string key = equals < 0 ? word[2..] : word[2..equals];
            string? value = equals >= 0 ? word[(equals + 1)..] : i + 1 < args.Count ? args[++i] : null;
            if (value is null)
            {
                return $"option '{word}' needs a value";
            }

            if (!Keys.Contains(key, StringComparer.OrdinalIgnoreCase)
                && !Sections.Any(section => key.StartsWith(section, StringComparison.OrdinalIgnoreCase) && key.Length > section.Length))
            {
                return $"unknown option '--{key}': the POP server takes --urls, --Pop, --Transport {string.Join('|', Transports)} and keys under {string.Join(", ", Sections)}";
            }

            if (key.Equals("Transport", StringComparison.OrdinalIgnoreCase) && !Transports.Contains(value))
            {
                return $"option '--Transport' must be one of {string.Join('|', Transports)} (got '{value}')";
            }

            if (key.Equals("urls", StringComparison.OrdinalIgnoreCase) && CheckUrls(value) is string urlsProblem)
            {
                return urlsProblem;
            }
        }

        return null;
    }

    /// <summary>
    /// Why Kestrel would not start on <paramref name="urls"/> (<c>--urls</c>: addresses separated by ';', as ASP.NET Core
    /// splits them), or null. Kestrel finds a bad address only when it starts, and throws an exception that names
    /// neither the option nor the address.
    /// </summary>
    private static string? CheckUrls(string urls)
    {
        string[] addresses = urls.Split(';', StringSplitOptions.RemoveEmptyEntries);
        if (addresses.Length == 0)
        {
            return $"option '--urls' needs at least one address, such as http://[::]:8080 (got '{urls}')";
        }

        foreach (string address in addresses)
        {
            BindingAddress binding;
            try
            {
                binding = BindingAddress.Parse(address);
            }
            catch (FormatException)
            {
                return $"option '--urls' must be http:// or https:// addresses separated by ';', such as http://[::]:8080 (got '{address}')";
            }

            if (!binding.Scheme.Equals("http", StringComparison.OrdinalIgnoreCase) && !binding.Scheme.Equals("https", StringComparison.OrdinalIgnoreCase))
            {
                return $"option '--urls' must be http:// or https:// addresses (got '{address}')";
            }

            if (!binding.IsUnixPipe && !binding.IsNamedPipe && binding.Port is < 0 or > IPEndPoint.MaxPort)
            {
                return $"option '--urls' must have ports from 0 to {IPEndPoint.MaxPort} (got '{address}')";
            }
        }

        return null;
    }

    /// <summary>
    /// Runs the server until SIGTERM, Ctrl-C or <paramref name="cancellationToken"/>. Throws when it cannot start (a bad
    /// transport option, an address in use): the caller prints the message.
    /// </summary>
    public static async Task RunAsync(string[] args, CancellationToken cancellationToken = default)
    {
        WebApplication app = Build(args);
        await using (app.ConfigureAwait(false))
        {
            await app.RunAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Builds the server from its command line (checked with <see cref="CheckArguments"/> first).</summary>
    public static WebApplication Build(string[] args)
    {
        if (CheckArguments(args) is string problem)
        {
            throw new ArgumentException(problem, nameof(args));
        }

        WebApplicationBuilder builder = WebApplication.CreateBuilder(new WebApplicationOptions
        {
            Args = args,
            ContentRootPath = AppContext.BaseDirectory,
            EnvironmentName = Environments.Production,
        });
        // Only the command line and the environment: no appsettings.json of whatever folder the tool lives in.
        foreach (IConfigurationSource json in builder.Configuration.Sources.OfType<JsonConfigurationSource>().ToArray())
        {
            builder.Configuration.Sources.Remove(json);
        }

        builder.Configuration.Sources.Insert(0, new MemoryConfigurationSource { InitialData = Defaults });

        switch (builder.Configuration["Transport"] ?? "anycast")
        {
            case "anycast":
                builder.WebHost.UseMptcpAnycast();
                break;
            case "mptcp-listen":
                // Kestrel's own transport on a bare MPTCP listen socket (nothing announced): the floor the kernel's MPTCP sets.
                builder.WebHost.UseSockets(o => o.CreateBoundListenSocket = BindMptcp);
                break;
            default: // "sockets": Kestrel's TCP transport
                break;
        }

        // The rescue agent in the same process, the one line an ASP.NET Core app adds, when configured (MptcpAnycast:Rescue).
        if (builder.Configuration[$"{MptcpAnycast.Rescue.RescueOptions.SectionName}:Name"] is { Length: > 0 })
        {
            builder.WebHost.UseMptcpAnycastRescue();
        }

        WebApplication app = builder.Build();
        Map(app, app.Configuration["Pop"] ?? Environment.MachineName);
        return app;
    }

    private static Socket BindMptcp(EndPoint endPoint)
    {
        var ip = (IPEndPoint)endPoint;
        Socket socket = MptcpSocket.Create(ip.AddressFamily);
        if (ip.Address.Equals(IPAddress.IPv6Any))
        {
            socket.DualMode = true;
        }

        socket.Bind(ip);
        return socket;
    }

    private static void Map(WebApplication app, string pop)
    {
        app.Use(async (context, next) =>
        {
            context.Response.Headers["X-Pop"] = pop;
            await next(context).ConfigureAwait(false);
        });

        app.MapGet("/", () => $"Hello from {pop} over MptcpAnycast\n");

        app.MapGet("/mptcp", (HttpContext context) =>
        {
            IMptcpConnectionFeature? feature = context.Features.Get<IMptcpConnectionFeature>();
            if (feature is null)
            {
                return Results.Json(new { pop, transport = "not MptcpAnycast (another transport served this connection)" });
            }

            // Subflows first: a subflow seen here is then seen by the state too, which reads the socket while the join is awaited.
            IReadOnlyList<MptcpSubflow> subflows = feature.GetSubflows();
            MptcpConnectionInfo info = feature.GetConnectionInfo();
            return Results.Json(new
            {
                pop,
                mptcp = feature.IsMptcp,
                fallbackReason = feature.FallbackReason.ToString(),
                token = feature.IsMptcp ? feature.Token.ToString("x8", CultureInfo.InvariantCulture) : null, // plain TCP has no token
                state = feature.State.ToString(),
                stateReason = feature.StateReason,
                announced = feature.AnnouncedEndPoint?.ToString(),
                acceptedAt = feature.AcceptedAt,
                announcedAt = feature.AnnouncedAt,
                joinedAt = feature.JoinedAt,
                subflows = subflows.Select(s => new { local = s.Local.ToString(), remote = s.Remote.ToString() }),
                addAddrSignal = info.AddAddrSignal,
                protocol = context.Request.Protocol,
            });
        });

        // The transport's meter, read in-process: cheap enough for a soak script to poll.
        var stats = new MptcpStats();
        app.Lifetime.ApplicationStopped.Register(stats.Dispose);
        app.MapGet("/mptcp/stats", () => Results.Json(stats.Read()));

        app.MapPost("/mptcp/announce", async (HttpContext context) =>
        {
            IMptcpConnectionFeature? feature = context.Features.Get<IMptcpConnectionFeature>();
            bool announced = feature is not null && await feature.AnnounceAsync(context.RequestAborted).ConfigureAwait(false);
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
            await StreamPattern.WriteAsync(context.Response.Body, n, bytesPerSecond: 0, context.RequestAborted).ConfigureAwait(false);
            return Results.Empty;
        });

        app.MapGet("/stream", async (double? seconds, long? rate, HttpContext context) =>
        {
            double s = seconds ?? 10;
            long r = rate ?? 65536;
            if (s is <= 0 or > 3600 || r is <= 0 or > 1L << 30)
            {
                return Results.BadRequest($"seconds must be in (0, 3600] and rate in (0, 2^30] bytes per second (got seconds={s}, rate={r})\n");
            }

            long total = (long)(s * r);
            context.Response.ContentType = "application/octet-stream";
            context.Response.ContentLength = total;
            await StreamPattern.WriteAsync(context.Response.Body, total, r, context.RequestAborted).ConfigureAwait(false);
            return Results.Empty;
        });
    }
}
