using System.Runtime.InteropServices;
using MptcpAnycast.Interop;

namespace MptcpAnycast.Rescue.Bpf;

/// <summary>
/// Reads the program's miss reports from its ring buffer on a thread of its own and hands each to a callback on that
/// thread (keep it short: it delays the next report). A report that does not parse is counted and skipped.
/// </summary>
internal sealed unsafe class MissReader : IDisposable
{
    private readonly Action<RescueMiss> _onMiss;
    private readonly Thread _thread;
    private readonly nint _ring;
    private GCHandle _self;
    private volatile bool _stopping;
    private long _malformed;

    public MissReader(RescueDataplane dataplane, Action<RescueMiss> onMiss)
    {
        ArgumentNullException.ThrowIfNull(dataplane);
        _onMiss = onMiss ?? throw new ArgumentNullException(nameof(onMiss));
        _self = GCHandle.Alloc(this);
        _ring = Libbpf.ring_buffer__new(dataplane.MissesFd, &OnSample, GCHandle.ToIntPtr(_self), null);
        if (_ring == 0)
        {
            int errno = Marshal.GetLastSystemError();
            _self.Free();
            throw new RescueDataplaneException("cannot open the miss ring buffer", errno);
        }

        _thread = new Thread(Run) { IsBackground = true, Name = "mptcp-anycast rescue misses" };
        _thread.Start();
    }

    /// <summary>Reports that were too short or named no valid flow.</summary>
    public long Malformed => Interlocked.Read(ref _malformed);

    /// <summary>Parses one report (the layout of <c>struct miss_report</c>); null when it is not one.</summary>
    internal static RescueMiss? Parse(ReadOnlySpan<byte> report)
    {
        if (report.Length < sizeof(BpfMissReportHeader))
        {
            return null;
        }

        BpfMissReportHeader header = MemoryMarshal.Read<BpfMissReportHeader>(report);
        if (header.Flow.ToFlow() is not TcpFlow flow)
        {
            return null;
        }

        ReadOnlySpan<byte> rest = report[sizeof(BpfMissReportHeader)..];
        byte[]? held = header.HeldLength > 0 && header.HeldLength <= rest.Length ? rest[..header.HeldLength].ToArray() : null;
        return new RescueMiss(flow, header.Sequence, header.AcknowledgementSequence, header.TcpFlags, held);
    }

    public void Dispose()
    {
        if (_stopping)
        {
            return;
        }

        _stopping = true;
        _thread.Join();
        Libbpf.ring_buffer__free(_ring);
        _self.Free();
    }

    private void Run()
    {
        while (!_stopping)
        {
            // A short timeout so Dispose is prompt; epoll wakes the poll as soon as a report is there.
            int polled = Libbpf.ring_buffer__poll(_ring, 100);
            if (polled < 0 && -polled != Errno.EINTR)
            {
                Thread.Sleep(100);
            }
        }
    }

    [UnmanagedCallersOnly]
    private static int OnSample(nint context, void* data, nuint size)
    {
        var reader = (MissReader)GCHandle.FromIntPtr(context).Target!;
        try
        {
            RescueMiss? miss = Parse(new ReadOnlySpan<byte>(data, (int)Math.Min(size, int.MaxValue)));
            if (miss is null)
            {
                Interlocked.Increment(ref reader._malformed);
                return 0;
            }

            reader._onMiss(miss);
        }
        catch (Exception)
        {
            // An exception must not cross into libbpf; the callback's owner logs its own failures.
            Interlocked.Increment(ref reader._malformed);
        }

        return 0;
    }
}
