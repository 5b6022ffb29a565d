using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using MptcpAnycast.Kestrel.Rescue;
using MptcpAnycast.Rescue;

namespace Microsoft.AspNetCore.Hosting;

/// <summary>Runs the rescue agent in an ASP.NET Core host.</summary>
public static class WebHostBuilderMptcpAnycastRescueExtensions
{
    /// <summary>
    /// Runs the rescue agent for as long as the host runs: plain TCP connections to the anycast addresses survive a
    /// route change by being tunnelled to the POP that owns them (every TCP socket of the host, Kestrel's or not).
    /// Options bind from <c>MptcpAnycast:Rescue</c>, then <paramref name="configure"/> runs. A bad setting stops
    /// start-up naming it; without CAP_BPF/CAP_NET_ADMIN the host logs one warning and serves without rescue.
    /// </summary>
    public static IWebHostBuilder UseMptcpAnycastRescue(this IWebHostBuilder builder, Action<RescueOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.ConfigureServices(services =>
        {
            services.AddOptions<RescueOptions>().BindConfiguration(RescueOptions.SectionName);
            if (configure is not null)
            {
                services.Configure(configure);
            }

            services.AddMetrics();
            services.TryAddSingleton<RescueHostedService>();
            services.AddHostedService(sp => sp.GetRequiredService<RescueHostedService>());
        });
    }
}
