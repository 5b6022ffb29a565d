using MptcpAnycast.Lab.Tests.Infrastructure;
using MptcpAnycast.Rescue.Bpf;
using Xunit.Abstractions;

namespace MptcpAnycast.Lab.Tests.Rescue;

/// <summary>
/// How the rescue programs sit on an interface, as the kernel reports it (<c>BPF_PROG_QUERY</c> on the tcx hooks, the
/// filter at the rescue handle of a <c>clsact</c> qdisc): through tcx on this kernel, replaced in place by a second load
/// (a restarted agent), never twice, and gone after detaching. Each test has a namespace of its own with one veth.
/// </summary>
public sealed class RescueAttachmentTests(ITestOutputHelper output) : IDisposable
{
    private const string Uplink = "up0";
    private readonly LabNamespace _host = CreateHost();
    private int _ifindex;

    public void Dispose() => _host.Dispose();

    [LabFact]
    public void The_programs_go_on_the_tcx_hooks_and_come_off_again()
    {
        List<string> attached = _host.Run(() =>
        {
            using RescueDataplane dataplane = RescueDataplane.Load();
            (string kind, IReadOnlyList<string> warnings) = dataplane.Attach(Ifindex());
            Assert.Equal("tcx", kind);
            Assert.Empty(warnings);
            List<string> found = TcAttachment.Describe(_ifindex);
            Assert.Equal(Expected("tcx", dataplane), found);
            return found;
        });

        output.WriteLine(string.Join("; ", attached));
        Assert.Empty(_host.Run(() => TcAttachment.Describe(_ifindex)));
        // tc sees no qdisc of ours: tcx needs none.
        Assert.DoesNotContain("clsact", _host.Exec("tc", "qdisc", "show", "dev", Uplink));
    }

    [LabFact]
    public void A_second_agent_replaces_the_first_ones_programs_in_place_and_the_first_one_stopping_leaves_them()
    {
        _host.Run(() =>
        {
            RescueDataplane first = RescueDataplane.Load();
            try
            {
                first.Attach(Ifindex());
                using RescueDataplane second = RescueDataplane.Load();
                second.Attach(_ifindex);
                output.WriteLine(string.Join("; ", TcAttachment.Describe(_ifindex)));
                Assert.Equal(Expected("tcx", second), TcAttachment.Describe(_ifindex));

                first.Dispose(); // its detach names its own programs, which are no longer there
                Assert.Equal(Expected("tcx", second), TcAttachment.Describe(_ifindex));
            }
            finally
            {
                first.Dispose();
            }

            Assert.Empty(TcAttachment.Describe(_ifindex));
        });
    }

    [LabFact]
    public void Attaching_through_tcx_takes_the_filters_an_earlier_clsact_attachment_left()
    {
        _host.Run(() =>
        {
            using RescueDataplane earlier = RescueDataplane.Load();
            Assert.Equal("clsact", earlier.Attach(Ifindex(), tcx: false).Kind);
            Assert.Equal(Expected("clsact", earlier), TcAttachment.Describe(_ifindex));

            using RescueDataplane later = RescueDataplane.Load();
            Assert.Equal("tcx", later.Attach(_ifindex).Kind);
            output.WriteLine(string.Join("; ", TcAttachment.Describe(_ifindex)));
            Assert.Equal(Expected("tcx", later), TcAttachment.Describe(_ifindex));
        });
    }

    [LabFact]
    public void The_interfaces_own_tc_filters_still_see_what_the_program_passes()
    {
        // Datagrams sent out of the other end arrive on the uplink's ingress: to an on-link neighbour that never answers.
        _host.Ip("addr", "add", "198.51.100.2/24", "dev", "up1");
        _host.Ip("neigh", "add", "198.51.100.99", "lladdr", "02:00:00:00:00:99", "dev", "up1");
        const int Sent = 20;

        (ulong rescue, ulong filter) = _host.Run(() =>
        {
            using RescueDataplane dataplane = Configured(RescueDataplane.Load());
            Assert.Equal("tcx", dataplane.Attach(Ifindex()).Kind);
            // The operator's own filter on the clsact qdisc, after tcx: a second copy of the program, which counts what it sees.
            using RescueDataplane operatorsFilter = Configured(RescueDataplane.Load());
            Assert.Equal("clsact", operatorsFilter.Attach(_ifindex, tcx: false).Kind);
            using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
            for (int i = 0; i < Sent; i++)
            {
                socket.SendTo(new byte[32], new System.Net.IPEndPoint(System.Net.IPAddress.Parse("198.51.100.99"), 9));
            }

            Thread.Sleep(200);
            return (dataplane.ReadCounters().NotAnycast, operatorsFilter.ReadCounters().NotAnycast);
        });

        output.WriteLine($"datagrams seen by the program on tcx: {rescue}; by the filter on the clsact qdisc: {filter}");
        Assert.True(rescue >= Sent, $"the program saw {rescue} of the {Sent} datagrams");
        Assert.True(filter >= Sent, $"the interface's own filter saw {filter} of the {Sent} datagrams the program passed");
    }

    [LabFact]
    public void A_hook_that_changes_between_reading_it_and_attaching_is_read_again()
    {
        _host.Run(() =>
        {
            using RescueDataplane dataplane = RescueDataplane.Load();
            using RescueDataplane other = RescueDataplane.Load();
            var reads = new List<bool>();
            AttachWithHook(dataplane, ingress =>
            {
                reads.Add(ingress);
                if (reads.Count == 1)
                {
                    other.Attach(_ifindex); // another agent attaches meanwhile: the kernel refuses the revision read before it
                }
            }, attach =>
            {
                TcxAttachment attachment = attach();
                try
                {
                    output.WriteLine($"hooks read before each attach (true: ingress): {string.Join(", ", reads)}");
                    Assert.Equal([true, true, false], reads);
                    Assert.Empty(attachment.Warnings);
                    // The second read found the other agent's programs and replaced them in place.
                    Assert.Equal(Expected("tcx", dataplane), TcAttachment.Describe(_ifindex));
                }
                finally
                {
                    attachment.Detach();
                }
            });
            Assert.Empty(TcAttachment.Describe(_ifindex));
        });
    }

    [LabFact]
    public void A_hook_that_changes_before_every_attach_gives_up_after_three_reads_and_names_the_hook()
    {
        _host.Run(() =>
        {
            using RescueDataplane dataplane = RescueDataplane.Load();
            using RescueDataplane other = RescueDataplane.Load();
            int reads = 0;
            bool otherAttached = false;
            MptcpAnycast.Rescue.RescueDataplaneException? error = null;
            AttachWithHook(dataplane, _ =>
            {
                reads++;
                if (otherAttached)
                {
                    other.Detach();
                }
                else
                {
                    other.Attach(_ifindex);
                }

                otherAttached = !otherAttached;
            }, attach => error = Assert.Throws<MptcpAnycast.Rescue.RescueDataplaneException>(() => attach()));
            Assert.NotNull(error);
            output.WriteLine(error.Message);
            Assert.Equal(3, reads);
            Assert.Equal(MptcpAnycast.Interop.Errno.ESTALE, error.Errno);
            Assert.Contains($"cannot attach the rescue program to the tcx ingress of interface {_ifindex}", error.Message);
            // Nothing of this attachment stays: only what the other agent holds after its last change.
            Assert.Equal(Expected("tcx", other), TcAttachment.Describe(_ifindex));
        });
    }

    /// <summary>
    /// Attaches the dataplane's programs through tcx as <see cref="RescueDataplane.Attach"/> does, with
    /// <paramref name="beforeAttach"/> called before each change of a hook; the descriptors stay open until
    /// <paramref name="use"/> returns (a tcx detach names the program by one).
    /// </summary>
    private void AttachWithHook(RescueDataplane dataplane, Action<bool> beforeAttach, Action<Func<TcxAttachment>> use)
    {
        int ingress = MptcpAnycast.Interop.Libbpf.bpf_prog_get_fd_by_id(dataplane.ProgramIds.Ingress);
        int egress = MptcpAnycast.Interop.Libbpf.bpf_prog_get_fd_by_id(dataplane.ProgramIds.Egress);
        try
        {
            Assert.True(ingress >= 0 && egress >= 0, $"cannot open the programs by id: {ingress}, {egress}");
            use(() => TcxAttachment.TryAttach(Ifindex(), ingress, egress, default, null, beforeAttach)
                ?? throw new Xunit.Sdk.XunitException("this kernel has no tcx"));
        }
        finally
        {
            Tmds.Linux.LibC.close(ingress);
            Tmds.Linux.LibC.close(egress);
        }
    }

    private static RescueDataplane Configured(RescueDataplane dataplane)
    {
        dataplane.Configure(new RescueDataplaneConfig { LocalIPv4 = System.Net.IPAddress.Parse("198.51.100.1"), MssIPv4 = 1400 }, enabled: true);
        dataplane.SetAnycast([System.Net.IPAddress.Parse("192.0.2.100")]);
        return dataplane;
    }

    private int Ifindex() => _ifindex = RescueLab.InterfaceIndex(_host, Uplink);

    private static List<string> Expected(string kind, RescueDataplane dataplane) =>
    [
        $"{kind}-ingress {dataplane.ProgramIds.Ingress} rescue_ingress",
        $"{kind}-egress {dataplane.ProgramIds.Egress} rescue_egress",
    ];

    private static LabNamespace CreateHost()
    {
        LabNamespace host = Topology.Single("attach");
        try
        {
            host.Ip("link", "add", Uplink, "type", "veth", "peer", "name", "up1");
            host.Ip("link", "set", Uplink, "up");
            host.Ip("link", "set", "up1", "up");
            return host;
        }
        catch
        {
            host.Dispose();
            throw;
        }
    }
}
