using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MptcpAnycast.Kestrel;

namespace MptcpAnycast.Tests.Kestrel;

/// <summary>Kestrel with <c>UseMptcpAnycast</c> on loopback, spoken to by MPTCP and by plain TCP clients.</summary>
public sealed class KestrelHostTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private static async Task<WebApplication> StartAsync(Action<ListenOptions>? listen = null, Action<MptcpAnycastOptions>? configure = null,
        string[]? args = null, int port = 0, RecordingLogger? logger = null)
    {
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder(args ?? []);
        builder.Logging.ClearProviders();
        if (logger is not null)
        {
            builder.Logging.AddProvider(logger);
        }

        builder.Services.AddHealthChecks().AddMptcpAnycast();
        builder.WebHost.UseMptcpAnycast(configure);
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, port, o => listen?.Invoke(o)));
        WebApplication app = builder.Build();
        app.MapGet("/mptcp", (HttpContext context) =>
        {
            IMptcpConnectionFeature? f = context.Features.Get<IMptcpConnectionFeature>();
            return f is null
                ? "none"
                : $"{f.IsMptcp}|{f.FallbackReason}|{f.Token:x8}|{f.State}|{context.Request.Protocol}|{f.GetSubflows().Count}";
        });
        app.MapHealthChecks("/healthz");
        await app.StartAsync().WaitAsync(Timeout);
        return app;
    }

    private static Uri BaseUri(WebApplication app, string scheme = "http")
    {
        var address = new Uri(app.Urls.First());
        return new Uri($"{scheme}://127.0.0.1:{address.Port}/");
    }

    [Fact]
    public async Task Mptcp_client_is_seen_as_mptcp_with_a_token()
    {
        await using WebApplication app = await StartAsync();
        using var client = new HttpClient(MptcpHttp.CreateHandler(MptcpFallback.None)) { BaseAddress = BaseUri(app), Timeout = Timeout };

        string[] parts = (await client.GetStringAsync("/mptcp")).Split('|');

        Assert.Equal("True", parts[0]);
        Assert.Equal("None", parts[1]);
        Assert.NotEqual("00000000", parts[2]);
        Assert.Equal("NotAnnounced", parts[3]); // no unicast address configured
        Assert.Equal("1", parts[5]);
    }

    [Fact]
    public async Task Plain_http_client_is_seen_as_fallen_back()
    {
        await using WebApplication app = await StartAsync();
        using var client = new HttpClient { BaseAddress = BaseUri(app), Timeout = Timeout };

        string[] parts = (await client.GetStringAsync("/mptcp")).Split('|');

        Assert.Equal("False", parts[0]);
        Assert.Equal("PlainTcpSocket", parts[1]);
        Assert.Equal("00000000", parts[2]); // the feature's Token is 0 without MPTCP; the samples' JSON shows null for it
    }

    [Fact]
    public async Task Nothing_configured_to_announce_warns_with_what_to_set_and_the_health_check_says_degraded()
    {
        var logger = new RecordingLogger();
        await using WebApplication app = await StartAsync(logger: logger);
        using var client = new HttpClient { BaseAddress = BaseUri(app), Timeout = Timeout };

        HttpResponseMessage health = await client.GetAsync("/healthz");
        string text = await health.Content.ReadAsStringAsync();

        if (!MptcpSocket.IsSupported)
        {
            Assert.Equal(1, logger.Count(1)); // no MPTCP here: that warning instead, and the check fails
            Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);
            return;
        }

        (LogLevel level, _, string message) = Assert.Single(logger.Entries, e => e.EventId == 25);
        Assert.Equal(LogLevel.Warning, level);
        Assert.Contains("MptcpAnycast:UnicastAddresses is empty", message);
        Assert.Contains("--MptcpAnycast:UnicastAddresses:0=192.0.2.10", message);
        Assert.Contains("announcing nothing", Assert.Single(logger.Messages(4)));
        Assert.Equal(HttpStatusCode.OK, health.StatusCode); // Degraded answers 200 by default
        Assert.Equal("Degraded", text);
    }

    [Fact]
    public async Task Mode_None_serves_mptcp_announcing_nothing_without_a_warning_and_is_healthy()
    {
        var logger = new RecordingLogger();
        await using WebApplication app = await StartAsync(args: ["--MptcpAnycast:Mode=None"], logger: logger);
        using var client = new HttpClient { BaseAddress = BaseUri(app), Timeout = Timeout };

        string text = await client.GetStringAsync("/healthz");

        Assert.Equal(0, logger.Count(25));
        Assert.Equal(MptcpSocket.IsSupported ? "Healthy" : "Unhealthy", text);
    }

    [Fact]
    public async Task Http2_prior_knowledge_runs_over_mptcp()
    {
        await using WebApplication app = await StartAsync(o => o.Protocols = HttpProtocols.Http2);
        using var client = new HttpClient(MptcpHttp.CreateHandler(MptcpFallback.None))
        {
            BaseAddress = BaseUri(app),
            DefaultRequestVersion = HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Timeout = Timeout,
        };

        string[] parts = (await client.GetStringAsync("/mptcp")).Split('|');

        Assert.Equal("True", parts[0]);
        Assert.Equal("HTTP/2", parts[4]);
    }

    [Fact]
    public async Task Https_runs_over_mptcp()
    {
        using X509Certificate2 certificate = SelfSigned();
        await using WebApplication app = await StartAsync(o => o.UseHttps(certificate));
        SocketsHttpHandler handler = MptcpHttp.CreateHandler(MptcpFallback.None);
        handler.SslOptions = new SslClientAuthenticationOptions { RemoteCertificateValidationCallback = (_, cert, _, _) => cert?.GetCertHashString() == certificate.GetCertHashString() };
        using var client = new HttpClient(handler) { BaseAddress = BaseUri(app, "https"), Timeout = Timeout };

        string[] parts = (await client.GetStringAsync("/mptcp")).Split('|');

        Assert.Equal("True", parts[0]);
        Assert.NotEqual("00000000", parts[2]);
    }

    [Fact]
    public async Task Options_bind_from_the_MptcpAnycast_configuration_section()
    {
        await using WebApplication app = await StartAsync(args: ["--MptcpAnycast:Mode=None", "--MptcpAnycast:AfterJoin=KeepBoth", "--MptcpAnycast:JoinTimeout=00:00:02"]);
        MptcpTransportFactory factory = app.Services.GetServices<Microsoft.AspNetCore.Connections.IConnectionListenerFactory>().OfType<MptcpTransportFactory>().Single();
        var options = app.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<MptcpAnycastOptions>>().Value;

        Assert.Equal(AnnouncementMode.None, options.Mode);
        Assert.Equal(AfterJoinPolicy.KeepBoth, options.AfterJoin);
        Assert.Equal(TimeSpan.FromSeconds(2), options.JoinTimeout);
        Assert.Equal(AnnouncementMode.None, factory.EffectiveMode);
    }

    [Theory]
    [InlineData("--MptcpAnycast:UnicastAddresses:0=192.0.2.300", "MptcpAnycast:UnicastAddresses = '192.0.2.300': not an address")]
    [InlineData("--MptcpAnycast:AnycastAddresses:0=anycast", "MptcpAnycast:AnycastAddresses = 'anycast': not an IP address")]
    [InlineData("--MptcpAnycast:UnicastAddresses:0=127.0.0.1:99999", "MptcpAnycast:UnicastAddresses = '127.0.0.1:99999': port '99999'")]
    [InlineData("--MptcpAnycast:JoinTimeout=00:00:00", "MptcpAnycast:JoinTimeout = '00:00:00': must be more than 0")]
    [InlineData("--MptcpAnycast:JoinTimeout=abc", "MptcpAnycast:JoinTimeout = 'abc': is not a time span; write it as [d.]hh:mm:ss[.fffffff], e.g. 00:00:05")]
    [InlineData("--MptcpAnycast:Mode=Sometimes", "MptcpAnycast:Mode = 'Sometimes': must be one of Auto, Userspace, Kernel, None")]
    [InlineData("--MptcpAnycast:Mode=Userspace,Kernel", "MptcpAnycast:Mode = 'Userspace,Kernel': must be one of Auto, Userspace, Kernel, None")]
    [InlineData("--MptcpAnycast:UnicastAddresses=192.0.2.10", "MptcpAnycast:UnicastAddresses = '192.0.2.10': is a list: write MptcpAnycast:UnicastAddresses:0=192.0.2.10")]
    [InlineData("--MptcpAnycast:Mode=Userspace", "MptcpAnycast:UnicastAddresses = '': Mode = Userspace needs at least one unicast address to announce (or 'auto')")]
    [InlineData("--MptcpAnycast:Mode=Kernel", "MptcpAnycast:UnicastAddresses = '': Mode = Kernel needs at least one unicast address to announce (or 'auto')")]
    [InlineData("--MptcpAnycast:JoinTimeout=5", "MptcpAnycast:JoinTimeout = '5.00:00:00': must be more than 0 and at most 1 hour; write it as [d.]hh:mm:ss[.fffffff], e.g. 00:00:05")]
    public async Task Bad_configuration_fails_start_with_one_message_naming_the_setting_and_binds_nothing(string arg, string message)
    {
        int port = FreePort();
        var logger = new RecordingLogger();
        var ex = await Assert.ThrowsAsync<Microsoft.Extensions.Options.OptionsValidationException>(() => StartAsync(args: [arg], port: port, logger: logger));
        Assert.StartsWith(message, ex.Message, StringComparison.Ordinal);
        Assert.Single(ex.Failures);
        Assert.Equal(typeof(MptcpAnycastOptions), ex.OptionsType);
        Assert.Equal(0, logger.Count(4)); // the transport never started

        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var refused = await Assert.ThrowsAsync<SocketException>(async () => await probe.ConnectAsync(IPAddress.Loopback, port));
        Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
    }

    [Theory]
    [InlineData("Kernel", "MptcpAnycast:UnicastAddresses = '': Mode = Kernel needs at least one unicast address")]
    [InlineData("Userspace", "MptcpAnycast:UnicastAddresses = '': Mode = Userspace needs at least one unicast address")]
    public async Task A_mode_without_a_unicast_address_stops_start_up_before_other_hosted_services_start(string mode, string message)
    {
        int port = FreePort();
        var other = new RecordingHostedService();
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder([$"--MptcpAnycast:Mode={mode}"]);
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton<Microsoft.Extensions.Hosting.IHostedService>(other);
        builder.WebHost.UseMptcpAnycast();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, port));
        await using WebApplication app = builder.Build();

        var ex = await Assert.ThrowsAsync<Microsoft.Extensions.Options.OptionsValidationException>(() => app.StartAsync().WaitAsync(Timeout));

        Assert.StartsWith(message, Assert.Single(ex.Failures), StringComparison.Ordinal);
        Assert.False(other.Started); // a rule that waits for Kestrel's first bind would fail only after the other services started
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var refused = await Assert.ThrowsAsync<SocketException>(async () => await probe.ConnectAsync(IPAddress.Loopback, port));
        Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
    }

    [Fact]
    public async Task Address_in_use_is_reported_as_kestrel_expects()
    {
        using var holder = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        holder.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        holder.Listen();
        int port = ((IPEndPoint)holder.LocalEndPoint!).Port;

        var ex = await Assert.ThrowsAnyAsync<IOException>(() => StartAsync(port: port));
        Assert.Contains("address already in use", ex.ToString(), StringComparison.OrdinalIgnoreCase);
    }

    private sealed class RecordingHostedService : Microsoft.Extensions.Hosting.IHostedService
    {
        public bool Started { get; private set; }

        public Task StartAsync(CancellationToken cancellationToken)
        {
            Started = true;
            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }

    private static int FreePort()
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)s.LocalEndPoint!).Port;
    }

    private static X509Certificate2 SelfSigned()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        using X509Certificate2 cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(1));
        return X509CertificateLoader.LoadPkcs12(cert.Export(X509ContentType.Pfx), null);
    }
}
