using System.Net;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using MptcpAnycast.Interop;

namespace MptcpAnycast.Rescue.Bpf;

/// <summary>
/// The rescue program (<c>rescue.bpf.c</c>, compiled at build time and embedded) loaded into the kernel through
/// libbpf and attached to one interface's tc ingress and egress (through tcx, or a <c>clsact</c> qdisc), plus its maps: the configuration, the
/// anycast and peer addresses, the owner map and its hint, the per-CPU counters and the ring buffer of misses. It belongs to the
/// network namespace of the thread that loads it. Disposing detaches the programs; the kernel frees the maps with
/// the last reference.
/// </summary>
internal sealed unsafe partial class RescueDataplane : IDisposable
{
    private const string ObjectResource = "MptcpAnycast.Rescue.rescue.bpf.o";

    private readonly nint _object;
    private readonly int _configFd, _anycastFd, _peersFd, _ownersFd, _countersFd, _missesFd;
    private readonly int _ingressFd, _egressFd;
    private readonly OwnerHint _hint;
    private readonly Lock _gate = new();
    // Innermost: held only while the configuration is written, so the owner hint can switch its flag from under its lock.
    private readonly Lock _configWrite = new();
    private TcAttachment? _attachment;
    private RescueDataplaneConfig _config = new();
    private bool _enabled;
    private IPAddress[] _anycast = [];
    private bool _hintActive;
    private uint _nowSeconds = NowSeconds();
    private bool _disposed;

    private RescueDataplane(nint obj)
    {
        _object = obj;
        _configFd = MapFd("rescue_config", sizeof(uint), sizeof(BpfRescueConfig));
        _anycastFd = MapFd("rescue_anycast", 16, 1);
        _peersFd = MapFd("rescue_peers", 16, sizeof(uint));
        _ownersFd = MapFd("rescue_owners", sizeof(BpfFlowKey), sizeof(BpfOwner));
        _countersFd = MapFd("rescue_counters", sizeof(uint), sizeof(ulong));
        uint counters = Libbpf.bpf_map__max_entries(Libbpf.bpf_object__find_map_by_name(obj, "rescue_counters"));
        if (counters != RescueDataplaneCounters.Count)
        {
            throw new RescueDataplaneException($"map rescue_counters has {counters} counters, the agent names {RescueDataplaneCounters.Count}", 0);
        }

        _missesFd = MapFd("rescue_misses", 0, 0);
        OwnerCapacity = (int)Libbpf.bpf_map__max_entries(Libbpf.bpf_object__find_map_by_name(obj, "rescue_owners"));
        int hintFd = MapFd("rescue_owner_hint", sizeof(uint), sizeof(ulong));
        uint hintWords = Libbpf.bpf_map__max_entries(Libbpf.bpf_object__find_map_by_name(obj, "rescue_owner_hint"));
        if (hintWords != OwnerHint.Words)
        {
            throw new RescueDataplaneException($"map rescue_owner_hint has {hintWords} words, the agent expects {OwnerHint.Words}", 0);
        }

        _hint = new OwnerHint(hintFd, _ownersFd, OwnerCapacity, active =>
        {
            lock (_configWrite)
            {
                _hintActive = active;
                WriteConfig();
            }
        });
        // An owner map pinned by an earlier agent comes with flows; the hint is new and empty.
        if (!_hint.Rebuild())
        {
            throw new RescueDataplaneException("cannot read the owner map to build the owner hint", 0);
        }
        _ingressFd = ProgramFd("rescue_ingress");
        _egressFd = ProgramFd("rescue_egress");
        ProgramIds = (TcAttachment.ProgramId(_ingressFd), TcAttachment.ProgramId(_egressFd));
    }

    /// <summary>How many flows the owner map holds; beyond that the least recently used entry goes.</summary>
    public int OwnerCapacity { get; }

    /// <summary>The owner hint's bits and rebuilds (for tests).</summary>
    internal OwnerHint Hint => _hint;

    /// <summary>The kernel's ids of the ingress and egress programs (<c>bpftool prog show id N</c>), fixed at load.</summary>
    public (uint Ingress, uint Egress) ProgramIds { get; }

    /// <summary>The ring buffer of misses, for <see cref="MissReader"/>.</summary>
    internal int MissesFd => _missesFd;

    /// <summary>The embedded object, as compiled from rescue.bpf.c.</summary>
    public static byte[] ReadObject()
    {
        using Stream stream = typeof(RescueDataplane).Assembly.GetManifestResourceStream(ObjectResource)
            ?? throw new InvalidOperationException($"the assembly lacks its embedded BPF object {ObjectResource}");
        var bytes = new byte[stream.Length];
        stream.ReadExactly(bytes);
        return bytes;
    }

    /// <summary>
    /// Loads the program into the kernel of the calling thread's network namespace (needs <c>CAP_BPF</c> and
    /// <c>CAP_NET_ADMIN</c>, or root). With <paramref name="ownersPinPath"/>, the owner map is pinned there (a
    /// directory on a bpffs mount) and an agent that starts again finds the flows it was rescuing.
    /// </summary>
    /// <exception cref="RescueDataplaneException">libbpf is missing, or the kernel refuses the object.</exception>
    public static RescueDataplane Load(string? ownersPinPath = null)
    {
        RescueDataplaneLog.Install();
        byte[] image = ReadObject();
        nint obj;
        try
        {
            fixed (byte* data = image)
            {
                obj = Libbpf.bpf_object__open_mem(data, (nuint)image.Length, null);
            }
        }
        catch (DllNotFoundException e)
        {
            throw new RescueDataplaneException("libbpf.so.1 not found (Debian: apt-get install libbpf1)", 0, e);
        }

        if (obj == 0)
        {
            throw new RescueDataplaneException("libbpf cannot open the embedded rescue object", Marshal.GetLastSystemError());
        }

        try
        {
            if (ownersPinPath is not null)
            {
                nint owners = Libbpf.bpf_object__find_map_by_name(obj, "rescue_owners");
                int pin = Libbpf.bpf_map__set_pin_path(owners, ownersPinPath);
                if (pin < 0)
                {
                    throw new RescueDataplaneException($"cannot pin the owner map at {ownersPinPath}", -pin);
                }
            }

            int loaded = Libbpf.bpf_object__load(obj);
            if (loaded < 0)
            {
                throw new RescueDataplaneException(
                    "the kernel refused the rescue program (needs CAP_BPF and CAP_NET_ADMIN, Linux 6.3 or later; libbpf's log says why)",
                    -loaded,
                    details: RescueDataplaneLog.TakeRecent());
            }

            return new RescueDataplane(obj);
        }
        catch
        {
            Libbpf.bpf_object__close(obj);
            throw;
        }
    }

    /// <summary>
    /// Attaches the ingress and egress programs to <paramref name="ifindex"/>: through tcx when the kernel has it
    /// (Linux 6.6+) and <paramref name="tcx"/> is true, else as filters of its <c>clsact</c> qdisc (made when it has
    /// none). An earlier agent's programs are replaced where this process can find them (see <see cref="TcxAttachment"/>);
    /// <paramref name="earlier"/> are the ids it recorded (0 when none), named in a warning when they cannot be;
    /// <paramref name="pins"/>, when given, say where tcx programs are pinned so that an agent restarted without
    /// CAP_SYS_ADMIN can replace them.
    /// </summary>
    /// <returns>How they are attached (<c>tcx</c> or <c>clsact</c>) and what the operator should know about it.</returns>
    public (string Kind, IReadOnlyList<string> Warnings) Attach(int ifindex, bool tcx = true, (uint Ingress, uint Egress) earlier = default, RescuePins? pins = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(ifindex);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_attachment is not null)
            {
                throw new InvalidOperationException($"already attached to interface {_attachment.InterfaceIndex}");
            }

            _attachment = TcAttachment.Attach(ifindex, _ingressFd, _egressFd, tcx, earlier, pins);
            return (_attachment.Kind, _attachment.Warnings);
        }
    }

    /// <summary>Writes the configuration; <paramref name="enabled"/> false makes both programs pass every packet.</summary>
    public void Configure(RescueDataplaneConfig config, bool enabled)
    {
        ArgumentNullException.ThrowIfNull(config);
        lock (_gate)
        {
            _config = config;
            _enabled = enabled;
            WriteConfig();
        }
    }

    /// <summary>
    /// Makes <paramref name="addresses"/> the anycast addresses (only segments to them are steered). The map gets every
    /// address first; the configuration then carries them in place (up to <see cref="BpfRescueConfig.InlineAnycast"/>
    /// per family) or tells the program to ask the map, so a packet sees the old set, the new one or, while the map is
    /// rewritten, both.
    /// </summary>
    public void SetAnycast(IEnumerable<IPAddress> addresses)
    {
        ArgumentNullException.ThrowIfNull(addresses);
        IPAddress[] set = [.. addresses.Select(a => a.Unmapped()).Distinct()];
        lock (_gate)
        {
            ReplaceSet(_anycastFd, set, (byte)1);
            _anycast = set;
            WriteConfig();
        }
    }

    private void WriteConfig()
    {
        lock (_configWrite)
        {
            BpfRescueConfig value = BpfRescueConfig.From(_config, _enabled, _anycast, _hintActive, _nowSeconds);
            uint zero = 0;
            Check(Libbpf.bpf_map_update_elem(_configFd, &zero, &value, Libbpf.BPF_ANY), "write the configuration");
        }
    }

    /// <summary>Makes <paramref name="addresses"/> the peers whose encapsulated packets are accepted.</summary>
    public void SetPeers(IEnumerable<IPAddress> addresses) => ReplaceSet(_peersFd, addresses, 0u);

    /// <summary>The program's counters, summed over CPUs.</summary>
    public RescueDataplaneCounters ReadCounters()
    {
        int cpus = PossibleCpus.Count;
        ulong* perCpu = stackalloc ulong[cpus];
        var totals = new ulong[RescueDataplaneCounters.Count];
        for (uint i = 0; i < totals.Length; i++)
        {
            if (Libbpf.bpf_map_lookup_elem(_countersFd, &i, perCpu) == 0)
            {
                for (int cpu = 0; cpu < cpus; cpu++)
                {
                    totals[i] += perCpu[cpu];
                }
            }
        }

        return new RescueDataplaneCounters(totals);
    }

    /// <summary>
    /// Runs the ingress or egress program on <paramref name="frame"/> (an Ethernet frame) in the kernel without
    /// attaching it (<c>BPF_PROG_TEST_RUN</c>): the verdict, the frame as the program left it, and the mean time per
    /// run over <paramref name="repeat"/> runs. Socket lookups see the calling thread's network namespace.
    /// </summary>
    public int TestRun(bool ingress, ReadOnlySpan<byte> frame, Span<byte> output, out int outputLength, int repeat, out uint nanosecondsPerRun) =>
        TestRun(ingress ? _ingressFd : _egressFd, frame, output, out outputLength, repeat, out nanosecondsPerRun);

    /// <summary><c>BPF_PROG_TEST_RUN</c> of any tc program, <paramref name="programFd"/> (the benchmarks' probes use it too).</summary>
    internal static int TestRun(int programFd, ReadOnlySpan<byte> frame, Span<byte> output, out int outputLength, int repeat, out uint nanosecondsPerRun)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(repeat);
        fixed (byte* input = frame, result = output)
        {
            var opts = new Libbpf.TestRunOpts
            {
                sz = (nuint)sizeof(Libbpf.TestRunOpts),
                data_in = input,
                data_size_in = (uint)frame.Length,
                data_out = result,
                data_size_out = (uint)output.Length,
                repeat = repeat,
            };
            int ran = Libbpf.bpf_prog_test_run_opts(programFd, &opts);
            if (ran < 0)
            {
                throw new RescueDataplaneException("BPF_PROG_TEST_RUN failed", -ran);
            }

            outputLength = (int)opts.data_size_out;
            nanosecondsPerRun = opts.duration;
            return (int)opts.retval;
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            DetachLocked();
            _hint.WaitForRebuild();
            Libbpf.bpf_object__close(_object);
        }
    }

    /// <summary>Detaches both programs (and removes the <c>clsact</c> qdisc if <see cref="Attach"/> made it); the maps stay.</summary>
    public void Detach()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            DetachLocked();
        }
    }

    private void DetachLocked()
    {
        _attachment?.Detach();
        _attachment = null;
    }

    private void ReplaceSet<T>(int fd, IEnumerable<IPAddress> addresses, T value)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(addresses);
        var wanted = new HashSet<string>();
        foreach (IPAddress address in addresses)
        {
            byte[] key = BpfAddress.Key(address);
            wanted.Add(Convert.ToHexString(key));
            fixed (byte* k = key)
            {
                Check(Libbpf.bpf_map_update_elem(fd, k, &value, Libbpf.BPF_ANY), $"add {address}");
            }
        }

        var stale = new List<byte[]>();
        byte* previous = null;
        var current = new byte[16];
        var next = new byte[16];
        fixed (byte* c = current, n = next)
        {
            while (Libbpf.bpf_map_get_next_key(fd, previous, n) == 0)
            {
                next.CopyTo(current, 0);
                previous = c;
                if (!wanted.Contains(Convert.ToHexString(current)))
                {
                    stale.Add((byte[])current.Clone());
                }
            }
        }

        foreach (byte[] key in stale)
        {
            fixed (byte* k = key)
            {
                Libbpf.bpf_map_delete_elem(fd, k);
            }
        }
    }

    private int MapFd(string name, int keySize, int valueSize)
    {
        nint map = Libbpf.bpf_object__find_map_by_name(_object, name);
        if (map == 0)
        {
            throw new RescueDataplaneException($"the rescue object has no map {name}", 0);
        }

        if (keySize > 0 && (Libbpf.bpf_map__key_size(map) != keySize || Libbpf.bpf_map__value_size(map) != valueSize))
        {
            throw new RescueDataplaneException(
                $"map {name} has key/value {Libbpf.bpf_map__key_size(map)}/{Libbpf.bpf_map__value_size(map)} bytes, the agent expects {keySize}/{valueSize}", 0);
        }

        return Libbpf.bpf_map__fd(map);
    }

    private int ProgramFd(string name)
    {
        nint program = Libbpf.bpf_object__find_program_by_name(_object, name);
        return program == 0
            ? throw new RescueDataplaneException($"the rescue object has no program {name}", 0)
            : Libbpf.bpf_program__fd(program);
    }

    private static void Check(int result, string what)
    {
        if (result < 0)
        {
            throw new RescueDataplaneException($"cannot {what}", -result);
        }
    }

    /// <summary>CLOCK_MONOTONIC in nanoseconds: the clock of <c>bpf_ktime_get_ns</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ulong MonotonicNanoseconds() => (ulong)(Environment.TickCount64 * 1_000_000);

    /// <summary>CLOCK_MONOTONIC in whole seconds, the owner entries' <c>used_seconds</c>: the same in every process of the host.</summary>
    internal static uint NowSeconds() => (uint)(Environment.TickCount64 / 1000);
}
