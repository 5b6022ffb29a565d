using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using MptcpAnycast.Kestrel;
using MptcpAnycast.Kestrel.Hosting;

namespace Microsoft.AspNetCore.Hosting;

/// <summary>Plugs the MPTCP anycast transport into Kestrel.</summary>
public static class WebHostBuilderMptcpAnycastExtensions
{
    /// <summary>
    /// Serves Kestrel's IP endpoints over MPTCP and announces the server's unicast address on each connection.
    /// Options bind from the configuration section <c>MptcpAnycast</c>, then <paramref name="configure"/> runs.
    /// On a host without MPTCP it logs one warning with the reason and serves plain TCP. A bad option ends the host's
    /// start, before anything is bound, with an <see cref="OptionsValidationException"/> whose message names the
    /// setting, the value and the expected format.
    /// </summary>
    public static IWebHostBuilder UseMptcpAnycast(this IWebHostBuilder builder, Action<MptcpAnycastOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.ConfigureServices(services =>
        {
            services.AddMptcpAnycastOptions();
            if (configure is not null)
            {
                services.Configure(configure);
            }

            services.AddMetrics();
            // Registered last, so Kestrel tries it before the default sockets transport; CanBind leaves non-IP endpoints to others.
            services.RemoveAll<MptcpTransportFactory>();
            services.AddSingleton<MptcpTransportFactory>();
            services.AddSingleton<IConnectionListenerFactory>(sp => sp.GetRequiredService<MptcpTransportFactory>());
        });
    }
}
