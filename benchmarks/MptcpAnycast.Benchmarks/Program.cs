using BenchmarkDotNet.Running;

// The harnesses below check their own arguments: a wrong one is said in one line (exit 2), not with a stack trace.
try
{
    if (args.Length > 0 && args[0] == "announce-roundtrip")
    {
        return await MptcpAnycast.Benchmarks.AnnounceRoundTrip.RunAsync(args[1..]);
    }

    if (args.Length > 0 && args[0] == "per-connection-memory")
    {
        return await MptcpAnycast.Benchmarks.PerConnectionMemory.RunAsync(args[1..]);
    }

    if (args.Length > 0 && args[0] == "event-lag-client")
    {
        return await MptcpAnycast.Benchmarks.EventLag.RunClientAsync(args[1..]);
    }

    if (args.Length > 0 && args[0] == "event-lag")
    {
        return await MptcpAnycast.Benchmarks.EventLag.RunAsync(args[1..]);
    }

    if (args.Length > 0 && args[0] == "rescue-decision")
    {
        return MptcpAnycast.Benchmarks.RescueDecision.Run(args[1..]);
    }

    if (args.Length > 0 && args[0] == "rescue-throughput")
    {
        return await MptcpAnycast.Benchmarks.RescueThroughput.RunAsync(args[1..]);
    }

    if (args.Length > 0 && args[0] == "rescue-attach")
    {
        return await MptcpAnycast.Benchmarks.RescueAttach.RunAsync(args[1..]);
    }
}
catch (MptcpAnycast.Benchmarks.UsageException ex)
{
    Console.Error.WriteLine(ex.Message);
    return 2;
}

BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
return 0;
