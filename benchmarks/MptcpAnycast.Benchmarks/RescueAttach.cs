using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;
using MptcpAnycast.Rescue;
using MptcpAnycast.Rescue.Bpf;

namespace MptcpAnycast.Benchmarks;

/// <summary>
/// <c>rescue-attach --interface IF --anycast A[,A] --unicast4 U [--unicast6 U] [--max-seconds S] [--commands] [--disabled]</c>:
/// for benchmarks/rescue-load.sh, the rescue program's cost on a server's own traffic without the agent's other work
/// (which runs only on misses). Attaches the program to IF of the namespace it runs in (start it with
/// <c>ip netns exec</c>) with the configuration the agent would give it (MSS budget from the MTU, no peers, no owners),
/// prints <c>attached</c>, and waits for SIGTERM or SIGINT (or S seconds, default 600); then prints the program's
/// counters and detaches. Misses (segments no local socket matches, which the program drops: there is no agent to
/// ask) are printed as they come, the first 20 per attachment.
/// <para>
/// With <c>--commands</c> it reads <c>attach</c>, <c>detach</c> and <c>quit</c> from stdin instead, printing
/// <c>attached</c>, then the counters and <c>detached</c>, so that one process serves a whole benchmark. With
/// <c>--disabled</c> the program is attached but configured off: it reads its configuration and passes every packet
/// (the cost of the hooks themselves). <c>--mss N</c> replaces the MSS budget (0: SYN-ACKs are left alone).
/// </para>
/// <para>
/// With <c>--slices N [--slice-ms M]</c> it loads the program once and attaches and detaches it itself, N pairs of
/// slices of M ms (default 1000), the order within a pair alternating (on-off, off-on, ...), while the caller keeps a
/// load running; per slice it reads the namespace's TCP counters (<c>/proc/net/snmp</c>: passive opens for churn,
/// segments in for keep-alive) and prints the rates, then the per-pair ratios on/off. Adjacent slices share the
/// machine's slow swings, which are what makes separate runs of several seconds differ by 20%. With <c>--toggle</c>
/// the program stays attached for the whole run and a slice turns it on or off through its configuration instead, so
/// that both sides carry the tc hooks and the ratio is the program's work alone. The programs are attached as the agent
/// attaches them (through tcx where the kernel has it); with <c>--clsact</c>, as <c>cls_bpf</c> filters of a
/// <c>clsact</c> qdisc, the way for kernels before 6.6. <c>--owners N</c> (with <c>--slices</c>) first gives the owner
/// map N entries of made-up clients, as on a POP that is rescuing N flows: the local segments then read the owner hint.
/// </para>
/// </summary>
internal static class RescueAttach
{
    public static async Task<int> RunAsync(string[] args)
    {
        string? name = null, unicast4 = null, unicast6 = null;
        var anycast = new List<IPAddress>();
        int maxSeconds = 600, slices = 0, sliceMs = 1000, mss = -1, owners = 0;
        bool commands = false, disabled = false, toggle = false, clsact = false;
        for (int i = 0; i < args.Length; i++)
        {
            string value = i + 1 < args.Length ? args[i + 1] : throw new UsageException($"rescue-attach: {args[i]} needs a value");
            switch (args[i])
            {
                case "--interface":
                    name = value;
                    break;
                case "--anycast":
                    anycast.AddRange(value.Split(',').Select(a => Arguments.Address("rescue-attach", "--anycast", a)));
                    break;
                case "--unicast4":
                    unicast4 = Arguments.Address("rescue-attach", "--unicast4", value).ToString();
                    break;
                case "--unicast6":
                    unicast6 = Arguments.Address("rescue-attach", "--unicast6", value).ToString();
                    break;
                case "--commands":
                    commands = true;
                    continue;
                case "--disabled":
                    disabled = true;
                    continue;
                case "--toggle":
                    toggle = true;
                    continue;
                case "--clsact":
                    clsact = true;
                    continue;
                case "--slices":
                    slices = Arguments.Int("rescue-attach", args[i], value, 1, 1000);
                    break;
                case "--mss":
                    mss = int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int m) && m is 0 or (>= 536 and <= 65_495)
                        ? m
                        : throw new UsageException($"rescue-attach: --mss must be 0 (leave SYN-ACKs alone) or 536..65495, got '{value}'");
                    break;
                case "--slice-ms":
                    sliceMs = Arguments.Int("rescue-attach", args[i], value, 100, 10_000);
                    break;
                case "--owners":
                    owners = Arguments.Int("rescue-attach", args[i], value, 0, 1_000_000);
                    break;
                case "--max-seconds":
                    maxSeconds = Arguments.Int("rescue-attach", args[i], value, 1, 3600);
                    break;
                default:
                    throw new UsageException($"rescue-attach takes --interface, --anycast, --unicast4, --unicast6, --max-seconds, --commands, --disabled, --toggle, --clsact, --slices, --slice-ms, --mss, --owners; got '{args[i]}'");
            }

            i++;
        }

        if (name is null || anycast.Count == 0 || unicast4 is null || name.Contains('/', StringComparison.Ordinal))
        {
            throw new UsageException("rescue-attach needs --interface IF, --anycast A and --unicast4 U");
        }

        // 'ip netns exec' mounts the namespace's own /sys: these are this namespace's interface index and MTU.
        if (!Directory.Exists($"/sys/class/net/{name}"))
        {
            throw new UsageException($"rescue-attach: --interface '{name}': no such interface in this network namespace");
        }

        int ifindex = int.Parse(File.ReadAllText($"/sys/class/net/{name}/ifindex").Trim(), CultureInfo.InvariantCulture);
        int mtu = int.Parse(File.ReadAllText($"/sys/class/net/{name}/mtu").Trim(), CultureInfo.InvariantCulture);

        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(maxSeconds));
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
        // The agent's defaults (RescueSettings): room for the outer header in every SYN-ACK's MSS.
        var config = new RescueDataplaneConfig
        {
            LocalIPv4 = IPAddress.Parse(unicast4),
            LocalIPv6 = unicast6 is null ? null : IPAddress.Parse(unicast6),
            MssIPv4 = mss >= 0 ? mss : mtu - 60,
            MssIPv6 = mss >= 0 ? mss : mtu - 100,
        };
        if (slices > 0)
        {
            if ((long)slices * 2 * sliceMs > maxSeconds * 1000L)
            {
                throw new UsageException($"rescue-attach: {slices} pairs of {sliceMs} ms do not fit in --max-seconds {maxSeconds}");
            }

            if (toggle && disabled)
            {
                throw new UsageException("rescue-attach: --toggle turns the program on and off itself; --disabled would keep it off");
            }

            return RunSlices(config, anycast, ifindex, disabled, toggle, clsact, slices, sliceMs, owners, stop.Token);
        }

        if (toggle || clsact || owners > 0)
        {
            throw new UsageException("rescue-attach: --toggle, --clsact and --owners need --slices");
        }

        if (!commands)
        {
            using Attached attached = Attached.Start(config, anycast, ifindex, disabled);
            Console.WriteLine($"attached to {name} (ifindex {ifindex}, MTU {mtu}); anycast {string.Join(", ", anycast)}");
            try
            {
                await Task.Delay(Timeout.Infinite, stop.Token);
            }
            catch (OperationCanceledException)
            {
            }

            Console.WriteLine(attached.Counters());
            return 0;
        }

        // One line per command on stdin, so that one process serves a whole benchmark: the "on" sides do not follow a
        // .NET start-up (JIT, runtime threads) that the "off" sides do not have.
        Attached? current = null;
        try
        {
            while (!stop.IsCancellationRequested && await Console.In.ReadLineAsync(stop.Token) is string line)
            {
                switch (line.Trim())
                {
                    case "attach" when current is null:
                        current = Attached.Start(config, anycast, ifindex, disabled);
                        Console.WriteLine($"attached to {name} (ifindex {ifindex}, MTU {mtu}); anycast {string.Join(", ", anycast)}");
                        break;
                    case "detach" when current is not null:
                        string counters = current.Counters();
                        current.Dispose();
                        current = null;
                        CheckDetached(ifindex);
                        Console.WriteLine(counters);
                        Console.WriteLine("detached");
                        break;
                    case "quit":
                        return 0;
                    default:
                        Console.WriteLine($"unexpected command '{line}' ({(current is null ? "detached" : "attached")})");
                        break;
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            current?.Dispose();
        }

        return 0;
    }

    /// <summary>
    /// Owner entries for <paramref name="count"/> flows of made-up clients (203.0.113.0/24 or 2001:db8:c::/48, none of
    /// them the load's) to <paramref name="server"/>, owned by a peer that is never asked: a POP that is rescuing that many
    /// flows, so that its local segments read the owner hint.
    /// </summary>
    private static void AddOwners(RescueDataplane dataplane, IPAddress server, int count)
    {
        if (count > dataplane.OwnerCapacity)
        {
            throw new UsageException($"rescue-attach: --owners {count} is more than the owner map holds ({dataplane.OwnerCapacity})");
        }

        bool ipv6 = server.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6;
        IPAddress owner = IPAddress.Parse(ipv6 ? "2001:db8:ffff::1" : "198.51.100.254");
        for (int i = 0; i < count; i++)
        {
            byte host = (byte)(1 + i % 250);
            IPAddress client = ipv6 ? IPAddress.Parse($"2001:db8:c::{host:x}") : new IPAddress([203, 0, 113, host]);
            dataplane.SetOwner(new TcpFlow(client, 1024 + i / 250, server, 443), owner);
        }
    }

    private static int RunSlices(RescueDataplaneConfig config, IReadOnlyList<IPAddress> anycast, int ifindex, bool disabled, bool toggle, bool clsact, int pairs, int sliceMs, int owners, CancellationToken stop)
    {
        using RescueDataplane dataplane = RescueDataplane.Load();
        dataplane.Configure(config, enabled: !disabled && !toggle);
        dataplane.SetAnycast(anycast);
        dataplane.SetPeers([]);
        AddOwners(dataplane, anycast[0], owners);
        string kind = "";
        void Attach() => kind = dataplane.Attach(ifindex, tcx: !clsact).Kind;

        void Detach()
        {
            dataplane.Detach();
            CheckDetached(ifindex);
        }

        if (toggle)
        {
            Attach();
        }

        var ratios = new Dictionary<string, List<double>> { ["PassiveOpens"] = [], ["InSegs"] = [] };
        var rates = new Dictionary<(bool On, string Counter), List<double>>();
        for (int pair = 0; pair < pairs && !stop.IsCancellationRequested; pair++)
        {
            var rate = new Dictionary<(bool, string), double>();
            foreach (bool on in pair % 2 == 0 ? [true, false] : (bool[])[false, true])
            {
                if (toggle)
                {
                    dataplane.Configure(config, enabled: on);
                }
                else if (on)
                {
                    Attach();
                }

                Dictionary<string, long> before = TcpCounters();
                long start = Stopwatch.GetTimestamp();
                stop.WaitHandle.WaitOne(sliceMs);
                Dictionary<string, long> after = TcpCounters();
                double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
                if (on && !toggle)
                {
                    Detach();
                }

                foreach (string counter in ratios.Keys)
                {
                    rate[(on, counter)] = (after[counter] - before[counter]) / seconds;
                    (CollectionsMarshal.GetValueRefOrAddDefault(rates, (on, counter), out _) ??= []).Add(rate[(on, counter)]);
                }

                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"pair {pair + 1} {(on ? "on " : "off")} {seconds * 1000:0} ms: passive opens {rate[(on, "PassiveOpens")]:0}/s, segments in {rate[(on, "InSegs")]:0}/s"));
            }

            foreach (string counter in ratios.Keys)
            {
                if (rate[(false, counter)] > 0)
                {
                    ratios[counter].Add(rate[(true, counter)] / rate[(false, counter)]);
                }
            }
        }

        Console.WriteLine(dataplane.ReadCounters().All().Where(c => c.Value != 0).Aggregate("counters:", (line, c) => $"{line} {c.Name}={c.Value}"));
        if (toggle)
        {
            Detach();
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{ratios.Values.Max(v => v.Count)} pairs of {sliceMs} ms ({kind}){(disabled ? " (attached, configured off)" : toggle ? " (attached throughout, turned on and off)" : "")}; ratio on/off per pair, median (interquartile range; min-max), and the median rates off vs on:"));
        foreach ((string counter, List<double> values) in ratios)
        {
            if (values.Count == 0)
            {
                continue;
            }

            double[] sorted = [.. values.Order()];
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{counter,-13} {Quantiles.Of(sorted, 0.5):0.000} ({Quantiles.Of(sorted, 0.25):0.000}-{Quantiles.Of(sorted, 0.75):0.000}; {sorted[0]:0.000}-{sorted[^1]:0.000}); {Quantiles.Of([.. rates[(false, counter)].Order()], 0.5):0} vs {Quantiles.Of([.. rates[(true, counter)].Order()], 0.5):0} per second"));
        }

        return 0;
    }

    /// <summary>The calling namespace's TCP counters (<c>/proc/net/snmp</c>, the "Tcp:" name and value lines).</summary>
    private static Dictionary<string, long> TcpCounters()
    {
        string[] tcp = [.. File.ReadLines("/proc/net/snmp").Where(l => l.StartsWith("Tcp:", StringComparison.Ordinal))];
        string[] names = tcp[0].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        string[] values = tcp[1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var counters = new Dictionary<string, long>();
        for (int i = 1; i < names.Length && i < values.Length; i++)
        {
            counters[names[i]] = long.Parse(values[i], CultureInfo.InvariantCulture);
        }

        return counters;
    }

    /// <summary>Fails when the kernel still reports a program on the interface's tcx hooks or at the rescue handle of its clsact qdisc after a detach.</summary>
    private static void CheckDetached(int ifindex)
    {
        List<string> left = TcAttachment.Describe(ifindex);
        if (left.Count > 0)
        {
            throw new InvalidOperationException($"the program is still attached after detach: {string.Join("; ", left)}");
        }
    }

    /// <summary>The program loaded, configured and attached; disposing detaches it and frees it.</summary>
    private sealed class Attached : IDisposable
    {
        private readonly RescueDataplane _dataplane;
        private readonly MissReader _misses;

        private Attached(RescueDataplane dataplane, MissReader misses)
        {
            _dataplane = dataplane;
            _misses = misses;
        }

        public static Attached Start(RescueDataplaneConfig config, IReadOnlyList<IPAddress> anycast, int ifindex, bool disabled)
        {
            RescueDataplane dataplane = RescueDataplane.Load();
            try
            {
                dataplane.Configure(config, enabled: !disabled);
                dataplane.SetAnycast(anycast);
                dataplane.SetPeers([]);
                // Misses are the program's verdict "not this host's connection": on a server's own traffic there
                // should be none, so each is shown (the first 20) to say which segments they were.
                int shown = 0;
                var misses = new MissReader(dataplane, miss =>
                {
                    if (Interlocked.Increment(ref shown) <= 20)
                    {
                        int length = miss.Held?.Length ?? 0;
                        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                            $"miss {miss.Flow} flags 0x{miss.TcpFlags & 0xfff:x3} seq {miss.Sequence} ack {miss.AcknowledgementSequence} packet {length} bytes"));
                    }
                });
                dataplane.Attach(ifindex);
                return new Attached(dataplane, misses);
            }
            catch
            {
                dataplane.Dispose();
                throw;
            }
        }

        public string Counters() =>
            "counters: " + string.Join(" ", _dataplane.ReadCounters().All().Where(c => c.Value != 0).Select(c => $"{c.Name}={c.Value}"));

        public void Dispose()
        {
            // The reader first: it polls the program's ring buffer, which goes with the program's object.
            _misses.Dispose();
            _dataplane.Dispose();
        }
    }
}
