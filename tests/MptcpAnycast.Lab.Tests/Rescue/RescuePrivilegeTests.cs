using System.Globalization;
using System.Text.Json;
using MptcpAnycast.Lab.Tests.Infrastructure;
using MptcpAnycast.Lab.Tests.Lab;
using Xunit.Abstractions;

namespace MptcpAnycast.Lab.Tests.Rescue;

/// <summary>
/// What the rescue agent needs: CAP_BPF and CAP_NET_ADMIN (load the program, attach it to tc) and CAP_NET_RAW (send
/// held segments and RSTs), no more; and what happens without them.
/// </summary>
[Collection(AnycastLabCollection.Name)]
public sealed class RescuePrivilegeTests(ITestOutputHelper output)
{
    private const int Port = 8080;

    private static readonly string[] NobodyWithRescueCapabilities =
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=+bpf,+net_admin,+net_raw", "--ambient-caps=+bpf,+net_admin,+net_raw", "--"];

    private static readonly string[] NobodyWithNetAdminAndRaw =
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=+net_admin,+net_raw", "--ambient-caps=+net_admin,+net_raw", "--"];

    [LabFact]
    public async Task An_ordinary_user_with_only_CAP_BPF_CAP_NET_ADMIN_and_CAP_NET_RAW_rescues_a_plain_TCP_connection()
    {
        using LabTopology lab = LabTool.Up(new LabOptions());
        using LabRescue rescue = await LabRescue.StartAsync(lab, LabTool.Command, wrapper: NobodyWithRescueCapabilities);
        foreach (LabPopId pop in (LabPopId[])[LabPopId.A, LabPopId.B])
        {
            string status = File.ReadAllText($"/proc/{rescue.Pid(pop)}/status");
            Assert.Contains("Uid:\t65534", status);
            // CAP_NET_ADMIN (12), CAP_NET_RAW (13), CAP_BPF (39) and nothing else.
            Assert.Matches(@"CapEff:\s+0000008000003000", status);
        }

        StreamOutcome outcome = await RescueLab.StreamAcrossFlipToBAsync(lab, rescue, Port);
        output.WriteLine(outcome.ToString());
        Assert.True(outcome.Complete, $"not rescued: {outcome}\n{rescue.Output(LabPopId.B)}");
    }

    [LabFact]
    public async Task An_agent_restarted_after_SIGKILL_without_CAP_SYS_ADMIN_goes_first_and_warns_of_its_predecessors_programs()
    {
        // Without CAP_SYS_ADMIN the new agent cannot open the old programs, so it cannot swap them out: its own go first,
        // the old ones stay after them, and it names them by the ids the killed agent left in its status file.
        using LabTopology lab = LabTool.Up(new LabOptions());
        using LabRescue rescue = await LabRescue.StartAsync(lab, LabTool.Command, pops: [LabPopId.B], wrapper: NobodyWithRescueCapabilities);
        LabPop b = lab.Pop(LabPopId.B);
        List<string> before = RescueLab.AttachedPrograms(b.Namespace, b.Interface);
        rescue.Kill(LabPopId.B);
        Assert.Equal(before, RescueLab.AttachedPrograms(b.Namespace, b.Interface));

        using ChildProcess restarted = await RescueLab.RestartAgentAsync(lab, LabPopId.B, NobodyWithRescueCapabilities);
        List<string> after = RescueLab.AttachedPrograms(b.Namespace, b.Interface);
        output.WriteLine($"before the kill: {string.Join("; ", before)}");
        output.WriteLine($"after the restart: {string.Join("; ", after)}");
        output.WriteLine(restarted.Output);

        Assert.Equal(["tcx-ingress", "tcx-egress"], before.Select(p => p.Split(' ')[0]));
        using JsonDocument status = JsonDocument.Parse(File.ReadAllText(LabRescue.StatusPathOf(lab.Options.Prefix, LabPopId.B)));
        long[] ids = [.. status.RootElement.GetProperty("programIds").EnumerateArray().Select(id => id.GetInt64())];
        string[] old = [.. before.Select(p => p.Split(' ')[1])];
        // Each hook: the new program first, then the old one.
        Assert.Equal([$"tcx-ingress {ids[0]}", $"tcx-ingress {old[0]}", $"tcx-egress {ids[1]}", $"tcx-egress {old[1]}"],
            after.Select(p => string.Join(' ', p.Split(' ').Take(2))));
        Assert.Contains($"the earlier rescue agent's program {old[0]} (its status file says) stays on the tcx ingress", restarted.Output);
        Assert.Contains($"the earlier rescue agent's program {old[1]} (its status file says) stays on the tcx egress", restarted.Output);
    }

    [LabFact]
    public async Task With_a_pin_directory_an_agent_restarted_after_SIGKILL_without_CAP_SYS_ADMIN_replaces_its_predecessors_programs_in_place()
    {
        // The pins let the new agent open the old programs by path, where opening them by id needs CAP_SYS_ADMIN.
        using LabTopology lab = LabTool.Up(new LabOptions());
        using var pinDirectory = new TestBpffs(lab, owner: "65534:65534");
        string bpffs = pinDirectory.Path;
        ChildProcess? restarted = null;
        try
        {
            using LabRescue rescue = await LabRescue.StartAsync(lab, LabTool.Command, pops: [LabPopId.B], wrapper: NobodyWithRescueCapabilities,
                extra: new Dictionary<string, object> { ["PinDirectory"] = bpffs });
            LabPop b = lab.Pop(LabPopId.B);
            string name = LabRescue.AgentName(LabPopId.B);
            string[] pins = [Path.Combine(bpffs, "rescue_ingress_" + name), Path.Combine(bpffs, "rescue_egress_" + name)];
            Assert.All(pins, pin => Assert.True(File.Exists(pin), $"the agent did not pin its program at {pin}"));
            List<string> before = RescueLab.AttachedPrograms(b.Namespace, b.Interface);
            rescue.Kill(LabPopId.B);

            restarted = await RescueLab.RestartAgentAsync(lab, LabPopId.B, NobodyWithRescueCapabilities);
            List<string> after = RescueLab.AttachedPrograms(b.Namespace, b.Interface);
            output.WriteLine($"before the kill: {string.Join("; ", before)}");
            output.WriteLine($"after the restart: {string.Join("; ", after)}");
            output.WriteLine(restarted.Output);

            using (JsonDocument status = JsonDocument.Parse(File.ReadAllText(LabRescue.StatusPathOf(lab.Options.Prefix, LabPopId.B))))
            {
                long[] ids = [.. status.RootElement.GetProperty("programIds").EnumerateArray().Select(id => id.GetInt64())];
                // Each hook holds the new program alone: the old one was swapped out, not left behind it.
                Assert.Equal([$"tcx-ingress {ids[0]} rescue_ingress", $"tcx-egress {ids[1]} rescue_egress"], after);
            }

            Assert.DoesNotContain("stays on the tcx", restarted.Output);
            Assert.DoesNotContain("cannot be read without CAP_SYS_ADMIN", restarted.Output);
            // With their pins renamed over, nothing holds the old programs: the kernel frees them.
            uint[] old = [.. before.Select(p => uint.Parse(p.Split(' ')[1], CultureInfo.InvariantCulture))];
            await Eventually.TrueAsync(() => old.All(id => MptcpAnycast.Rescue.Bpf.TcAttachment.ProgramName(id) is null), "the old programs are freed");

            // A clean stop detaches the programs and removes their pins (a pin would keep a detached program loaded).
            Assert.True(restarted.Stop(TimeSpan.FromSeconds(20)), "the restarted agent did not stop");
            Assert.Empty(RescueLab.AttachedPrograms(b.Namespace, b.Interface));
            Assert.All(pins, pin => Assert.False(File.Exists(pin), $"the stopped agent left its pin {pin}"));
            Assert.True(File.Exists(Path.Combine(bpffs, "rescue_owners_" + name)), "the owner map's pin outlives the agent");
        }
        finally
        {
            restarted?.Dispose();
        }
    }

    [LabFact]
    public async Task Without_CAP_BPF_the_agent_says_which_capabilities_it_needs_and_exits_1()
    {
        using LabTopology lab = LabTool.Up(new LabOptions());
        IReadOnlyDictionary<LabPopId, string> configs = LabRescue.WriteConfigurations(lab);
        using ChildProcess agent = lab.Pop(LabPopId.B).Namespace.Start(
            [.. NobodyWithNetAdminAndRaw, .. LabTool.Command.With(["rescue", "run", "--config", configs[LabPopId.B]])]);

        Assert.True(await agent.WaitForExitAsync(TimeSpan.FromSeconds(30)), "the agent did not exit");
        output.WriteLine(agent.Output);
        Assert.Equal(1, agent.ExitCode);
        Assert.Contains("needs CAP_BPF and CAP_NET_ADMIN", agent.Output);
        Assert.DoesNotContain("Unhandled exception", agent.Output);
        Assert.Empty(RescueLab.AttachedPrograms(lab.Pop(LabPopId.B).Namespace, LabTopology.UplinkInterface));
    }

    [LabFact]
    public async Task An_ASP_NET_Core_host_without_CAP_BPF_warns_once_and_keeps_serving()
    {
        using LabTopology lab = LabTool.Up(new LabOptions());
        LabPop a = lab.Pop(LabPopId.A);
        using PopServer server = await PopServer.StartAsync(a.Namespace, LabTool.Command,
            [.. PopServer.Arguments(lab, a, null, null), .. LabRescue.HostArguments(lab, LabPopId.A)], wrapper: NobodyWithNetAdminAndRaw);
        Assert.False(server.HasExited, server.Output);

        CommandResult answer = lab.Client.TryExec(TimeSpan.FromSeconds(10), "curl", "-s", "--max-time", "5", $"http://{lab.Plan.Anycast4}:{PopServer.Port}/");
        output.WriteLine(server.Output);
        Assert.True(answer.Succeeded, answer.Output);
        Assert.Contains("pop-a", answer.Output);
        Assert.Equal(1, server.Count("The rescue agent cannot run"));
        Assert.Contains("needs CAP_BPF and CAP_NET_ADMIN", server.Output);
    }
}
