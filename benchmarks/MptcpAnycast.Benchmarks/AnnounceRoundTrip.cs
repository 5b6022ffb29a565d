using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Benchmarks;

/// <summary>
/// A timing harness for the ANNOUNCE round trip to the kernel (request, kernel work, ACK), reporting median and p99
/// over many samples. Run it inside a throw-away namespace with the userspace path manager; see benchmarks/README.md.
/// </summary>
internal static class AnnounceRoundTrip
{
    public static async Task<int> RunAsync(string[] args)
    {
        int samples = args.Length > 0 ? Arguments.Int("announce-roundtrip", "SAMPLES", args[0], 1, 10_000_000) : 20_000;
        string pm = File.ReadAllText("/proc/sys/net/mptcp/path_manager").Trim();
        if (pm != "userspace")
        {
            Console.Error.WriteLine($"net.mptcp.path_manager is '{pm}': run inside a namespace with the userspace path manager (see benchmarks/README.md)");
            return 2;
        }

        using Socket listener = MptcpSocket.CreateListener(new IPEndPoint(IPAddress.Loopback, 0));
        using Socket client = MptcpSocket.Create(AddressFamily.InterNetwork);
        client.Connect(listener.LocalEndPoint!);
        using Socket server = listener.Accept();
        client.Send(new byte[] { 1 });
        server.Receive(new byte[1]);
        uint token = MptcpSocket.GetConnectionInfo(server).Token;
        var announced = new IPEndPoint(IPAddress.Parse("127.0.0.2"), 0);

        await using PathManagerClient pm2 = await PathManagerClient.OpenAsync();

        // Check the answer before timing it: a wrong token is refused, the right one accepted, and the peer saw it.
        try
        {
            await pm2.AnnounceAsync(token ^ 1, 1, announced);
            throw new InvalidOperationException("ANNOUNCE with a wrong token was accepted");
        }
        catch (PathManagerException ex) when (ex.KernelMessage == "invalid token")
        {
        }

        await pm2.AnnounceAsync(token, 1, announced);
        for (int i = 0; i < 100 && MptcpSocket.GetConnectionInfo(server).AddAddrSignal == 0; i++)
        {
            await Task.Delay(10);
        }

        if (MptcpSocket.GetConnectionInfo(server).AddAddrSignal == 0)
        {
            throw new InvalidOperationException("the kernel did not send ADD_ADDR");
        }

        for (int i = 0; i < 1000; i++)
        {
            await pm2.AnnounceAsync(token, 1, announced); // warm-up; re-announcing the same id is accepted
        }

        double[] micros = new double[samples];
        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        var total = Stopwatch.StartNew();
        for (int i = 0; i < samples; i++)
        {
            long start = Stopwatch.GetTimestamp();
            await pm2.AnnounceAsync(token, 1, announced);
            micros[i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
        }

        total.Stop();
        long allocatedPerAnnounce = (GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore) / samples;
        Array.Sort(micros);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"ANNOUNCE round trip, {samples} sequential samples: median {micros[samples / 2]:0.0} us, p90 {micros[samples * 9 / 10]:0.0} us, "
            + $"p99 {micros[samples * 99 / 100]:0.0} us, max {micros[^1]:0.0} us; {samples / total.Elapsed.TotalSeconds:0} announces/s; {allocatedPerAnnounce} bytes allocated per announce"));

        const int Concurrency = 8;
        var parallel = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, Concurrency).Select(async _ =>
        {
            for (int i = 0; i < samples / Concurrency; i++)
            {
                await pm2.AnnounceAsync(token, 1, announced);
            }
        }));
        parallel.Stop();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"ANNOUNCE with {Concurrency} concurrent callers: {samples / parallel.Elapsed.TotalSeconds:0} announces/s"));
        return 0;
    }
}
