using System.Globalization;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using MptcpAnycast;
using MptcpAnycast.Kestrel;
using OpenTelemetry.Metrics;

// HelloAnycast: the smallest ASP.NET Core app on the MPTCP anycast transport.
// Run: dotnet run --project examples/HelloAnycast -- --urls http://0.0.0.0:8080 --MptcpAnycast:UnicastAddresses:0=192.0.2.10
// The content root is the app's own folder, so that its appsettings.json applies from any working directory.
WebApplicationBuilder builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
builder.WebHost.UseMptcpAnycast();
builder.WebHost.UseMptcpAnycastRescue(); // plain TCP connections survive too, once MptcpAnycast:Rescue is configured

// The transport's meter, and Kestrel's, for Prometheus at GET /metrics; its health at GET /healthz.
builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics
    .AddMeter(MptcpAnycastMeter.Name, "Microsoft.AspNetCore.Server.Kestrel")
    .AddPrometheusExporter());
builder.Services.AddHealthChecks().AddMptcpAnycast();

WebApplication app = builder.Build();
string pop = app.Configuration["Pop"] ?? Environment.MachineName; // which POP answered: the point of anycast

app.MapGet("/", () => $"Hello from {pop} over MptcpAnycast\n");

// What the transport knows about the connection this request came on.
app.MapGet("/mptcp", (HttpContext context) =>
{
    IMptcpConnectionFeature? feature = context.Features.Get<IMptcpConnectionFeature>();
    if (feature is null)
    {
        return Results.Json(new { pop, transport = "not MptcpAnycast (another transport served this connection)" });
    }

    // Subflows first: a subflow seen here is then seen by the state too, which reads the socket while the join is awaited.
    IReadOnlyList<MptcpSubflow> subflows = feature.GetSubflows();
    return Results.Json(new
    {
        pop,
        mptcp = feature.IsMptcp,
        fallbackReason = feature.FallbackReason.ToString(),
        token = feature.IsMptcp ? feature.Token.ToString("x8", CultureInfo.InvariantCulture) : null, // plain TCP has no token
        state = feature.State.ToString(),
        stateReason = feature.StateReason,
        announced = feature.AnnouncedEndPoint?.ToString(),
        subflows = subflows.Select(s => new { local = s.Local.ToString(), remote = s.Remote.ToString() }),
    });
});

app.MapPrometheusScrapingEndpoint(); // GET /metrics
app.MapHealthChecks("/healthz", new HealthCheckOptions
{
    // The status alone says little; the reason is what an operator needs.
    ResponseWriter = (context, report) => context.Response.WriteAsJsonAsync(new
    {
        status = report.Status.ToString(),
        checks = report.Entries.Select(e => new { name = e.Key, status = e.Value.Status.ToString(), description = e.Value.Description, data = e.Value.Data }),
    }),
});

try
{
    app.Run();
}
catch (Exception ex) when (ex is OptionsValidationException or MptcpAnycastConfigurationException)
{
    // A bad setting, or a host that cannot do what it asks (the host has logged it too, with the stack):
    // say it in one line and exit 1, rather than crash.
    Console.Error.WriteLine($"HelloAnycast: {ex.Message}");
    return 1;
}

return 0;
