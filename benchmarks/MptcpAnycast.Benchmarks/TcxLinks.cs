using System.Runtime.InteropServices;
using MptcpAnycast.Rescue.Bpf;

namespace MptcpAnycast.Benchmarks;

/// <summary>
/// The rescue programs attached through tcx links (<c>BPF_LINK_CREATE</c> with <c>BPF_TCX_INGRESS</c> and
/// <c>BPF_TCX_EGRESS</c>, Linux 6.6+) instead of a <c>clsact</c> qdisc with <c>cls_bpf</c> filters: for
/// <c>rescue-attach --tcx</c>, to measure what the tc layer itself costs. Closing the links detaches the programs.
/// libbpf 1.1 (Debian 12) has no tcx call, but its <c>bpf_link_create</c> passes an attach type it does not know on
/// to the kernel unchanged.
/// </summary>
internal sealed partial class TcxLinks : IDisposable
{
    private const int BpfTcxIngress = 46, BpfTcxEgress = 47;
    private readonly int _ingress, _egress;

    private TcxLinks(int ingress, int egress)
    {
        _ingress = ingress;
        _egress = egress;
    }

    public static TcxLinks Attach(RescueDataplane dataplane, int ifindex)
    {
        int ingress = Create(dataplane.IngressProgramFd, ifindex, BpfTcxIngress);
        try
        {
            return new TcxLinks(ingress, Create(dataplane.EgressProgramFd, ifindex, BpfTcxEgress));
        }
        catch
        {
            Tmds.Linux.LibC.close(ingress);
            throw;
        }
    }

    public void Dispose()
    {
        Tmds.Linux.LibC.close(_egress);
        Tmds.Linux.LibC.close(_ingress);
    }

    private static int Create(int programFd, int ifindex, int attachType)
    {
        int fd = bpf_link_create(programFd, ifindex, attachType, 0);
        return fd >= 0 ? fd : throw new InvalidOperationException($"BPF_LINK_CREATE (attach type {attachType}) on interface {ifindex} failed: errno {-fd}");
    }

    [LibraryImport("libbpf.so.1")]
    private static partial int bpf_link_create(int progFd, int targetFd, int attachType, nint opts);
}
