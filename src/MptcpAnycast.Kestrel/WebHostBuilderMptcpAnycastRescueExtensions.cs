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
    /// Options bind from <c>MptcpAnycast:Rescue</c>, then <paramref name="configure"/> runs. They are validated when
    /// the host starts, before any hosted service (Kestrel included): a bad or missing setting stops start-up with an
    /// <see cref="Microsoft.Extensions.Options.OptionsValidationException"/> naming it and its value. Nothing set at
    /// all: one warning, and the host serves without rescue; so it does without CAP_BPF/CAP_NET_ADMIN.
    /// </summary>
    public static IWebHostBuilder UseMptcpAnycastRescue(this IWebHostBuilder builder, Action<RescueOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.ConfigureServices(services =>
        {
            // Once only: binding twice would list every anycast address and peer twice.
            bool first = !services.Any(static d => d.ServiceType == typeof(RescueHostedService));
            if (first)
            {
                services.AddRescueOptions();
            }

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
