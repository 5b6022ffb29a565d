using System.Globalization;
using MptcpAnycast;
using MptcpAnycast.Kestrel;

// HelloAnycast: the smallest ASP.NET Core app on the MPTCP anycast transport.
// Run: dotnet run --project examples/HelloAnycast -- --urls http://0.0.0.0:8080 --MptcpAnycast:UnicastAddresses:0=192.0.2.10
// The content root is the app's own folder, so that its appsettings.json applies from any working directory.
WebApplicationBuilder builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
builder.WebHost.UseMptcpAnycast();
builder.WebHost.UseMptcpAnycastRescue(); // plain TCP connections survive too, once MptcpAnycast:Rescue is configured

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
        token = feature.Token.ToString("x8", CultureInfo.InvariantCulture),
        state = feature.State.ToString(),
        announced = feature.AnnouncedEndPoint?.ToString(),
        subflows = subflows.Select(s => new { local = s.Local.ToString(), remote = s.Remote.ToString() }),
    });
});

app.Run();
