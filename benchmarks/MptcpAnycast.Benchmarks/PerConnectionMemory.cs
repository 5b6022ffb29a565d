using System.Diagnostics.Metrics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using MptcpAnycast.Kestrel;
using MptcpAnycast.Kestrel.Connections;
using MptcpAnycast.Kestrel.Control;
using MptcpAnycast.Kestrel.Diagnostics;

namespace MptcpAnycast.Benchmarks;

/// <summary>
/// <c>per-connection-memory N</c>: the managed memory the transport keeps per open connection (its tracking object and
/// feature, and the control path's entry for it). Opens N MPTCP connections on loopback, accepts each as the listener
/// does and hands it to the control path (Userspace mode, a path manager that answers at once), waits until all are
/// announced, and compares the managed heap after a full collection with the heap before. An upper bound: it also
/// counts the socket's cached end points, which Kestrel creates anyway.
/// </summary>
internal static class PerConnectionMemory
{
    public static async Task<int> RunAsync(string[] args)
    {
        int n = args.Length > 0 && int.TryParse(args[0], NumberStyles.None, CultureInfo.InvariantCulture, out int parsed) && parsed is > 0 and <= 100_000
            ? parsed
            : args.Length == 0 ? 10_000 : throw new UsageException($"per-connection-memory takes a count from 1 to 100000, got '{args[0]}'");

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
        await using var control = new ControlPath(settings, AnnouncementMode.Userspace, new InstantPathManager(), null,
            NullLogger.Instance, new MptcpAnycastMetrics(meters), TimeProvider.System);
        control.Start();

        // Warm up the code paths on one connection, so that JIT and static data are in the baseline.
        var states = new MptcpConnectionFeature[n];
        states[0] = Accept(servers[0], "c0", control);
        await WaitAnnouncedAsync(states, 1);
        long before = Heap();
        for (int i = 1; i < n; i++)
        {
            states[i] = Accept(servers[i], string.Create(CultureInfo.InvariantCulture, $"mptcp-{i}"), control);
        }

        await WaitAnnouncedAsync(states, n);
        long after = Heap();
        if (control.TrackedConnections != n)
        {
            throw new InvalidOperationException($"{control.TrackedConnections} of {n} connections tracked");
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

    /// <summary>As the listener does: the socket's facts, the feature, then the control path takes over.</summary>
    private static MptcpConnectionFeature Accept(Socket server, string id, ControlPath control)
    {
        var connection = new TrackedConnection(server, MptcpSocket.GetConnectionInfo(server), id, (IPEndPoint)server.LocalEndPoint!,
            (IPEndPoint)server.RemoteEndPoint!, DateTimeOffset.UtcNow);
        control.OnAccepted(connection);
        return new MptcpConnectionFeature(connection, control);
    }

    private static async Task WaitAnnouncedAsync(MptcpConnectionFeature[] states, int count)
    {
        for (int i = 0; i < 500 && states.Take(count).Any(s => s.Connection.State != UnicastSubflowState.Announced); i++)
        {
            await Task.Delay(10);
        }
    }
}
