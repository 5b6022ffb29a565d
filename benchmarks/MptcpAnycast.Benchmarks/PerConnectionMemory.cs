using System.Diagnostics.Metrics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using MptcpAnycast.Kestrel;
using MptcpAnycast.Kestrel.Announcing;
using MptcpAnycast.Kestrel.Diagnostics;
using MptcpAnycast.Kestrel.Internal;

namespace MptcpAnycast.Benchmarks;

/// <summary>
/// <c>per-connection-memory N</c>: the managed memory the transport's announcer keeps per open connection. Opens N
/// MPTCP connections on loopback, hands each accepted socket to the announcer (Userspace mode, a path manager that
/// answers at once), waits until all are announced, and compares the managed heap after a full collection with the
/// heap before. An upper bound: it also counts the socket's cached end points, which Kestrel creates anyway.
/// </summary>
internal static class PerConnectionMemory
{
    public static async Task<int> RunAsync(string[] args)
    {
        int n = args.Length > 0 && int.TryParse(args[0], NumberStyles.None, CultureInfo.InvariantCulture, out int parsed) && parsed is > 0 and <= 100_000
            ? parsed
            : args.Length == 0 ? 10_000 : throw new ArgumentException($"per-connection-memory takes a count from 1 to 100000, got '{args[0]}'");

        using Socket listener = MptcpSocket.CreateListener(new IPEndPoint(IPAddress.Loopback, 0), backlog: 4096);
        var clients = new List<Socket>(n);
        var servers = new List<Socket>(n);
        for (int i = 0; i < n; i++)
        {
            Socket client = MptcpSocket.Create(AddressFamily.InterNetwork);
            await client.ConnectAsync(listener.LocalEndPoint!);
            clients.Add(client);
            Socket server = await listener.AcceptAsync();
            _ = server.LocalEndPoint; // cached by the Socket; Kestrel reads it too
            _ = server.RemoteEndPoint;
            servers.Add(server);
        }

        MptcpAnycastSettings settings = MptcpAnycastSettings.Validate(new MptcpAnycastOptions { UnicastAddresses = ["127.0.0.2"] }, [IPAddress.Parse("127.0.0.2")]);
        IMeterFactory meters = new ServiceCollection().AddMetrics().BuildServiceProvider().GetRequiredService<IMeterFactory>();
        await using var announcer = new UnicastAnnouncer(settings, AnnouncementMode.Userspace, new InstantPathManager(), null,
            NullLogger.Instance, new MptcpAnycastMetrics(meters), TimeProvider.System);

        // Warm up the code paths on one connection, so that JIT and static data are in the baseline.
        var states = new MptcpConnectionState[n];
        states[0] = announcer.OnAccepted(servers[0], "c0");
        await WaitAnnouncedAsync(states, 1);
        long before = Heap();
        for (int i = 1; i < n; i++)
        {
            states[i] = announcer.OnAccepted(servers[i], string.Create(CultureInfo.InvariantCulture, $"mptcp-{i}"));
        }

        await WaitAnnouncedAsync(states, n);
        long after = Heap();
        if (announcer.TrackedConnections != n)
        {
            throw new InvalidOperationException($"{announcer.TrackedConnections} of {n} connections tracked");
        }

        Console.WriteLine($"{n} connections: managed heap {before / 1024} KiB -> {after / 1024} KiB; {(after - before) / (double)(n - 1):0} bytes per connection");
        GC.KeepAlive(states);
        servers.ForEach(s => s.Dispose());
        clients.ForEach(c => c.Dispose());
        return 0;
    }

    private static long Heap()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        return GC.GetTotalMemory(forceFullCollection: true);
    }

    private static async Task WaitAnnouncedAsync(MptcpConnectionState[] states, int count)
    {
        for (int i = 0; i < 500 && states.Take(count).Any(s => s.State != UnicastSubflowState.Announced); i++)
        {
            await Task.Delay(10);
        }
    }
}
