using System.Text.Json;
using MptcpAnycast.Lab.Tests.Infrastructure;
using MptcpAnycast.Lab.Tests.Lab;
using Xunit.Abstractions;

namespace MptcpAnycast.Lab.Tests.Rescue;

/// <summary>
/// The agents on a kernel without tcx (Linux 6.3 to 6.5), played by a seccomp filter that refuses bpf(2)'s tcx
/// commands with EINVAL as such a kernel does (<see cref="RescueLab.WithoutTcx"/>): they fall back to filters of a
/// <c>clsact</c> qdisc and rescue as they do through tcx.
/// </summary>
[Collection(AnycastLabCollection.Name)]
public sealed class RescueWithoutTcxTests(ITestOutputHelper output)
{
    private const int Port = 8080;

    [LabFact]
    public async Task Without_tcx_the_agents_attach_as_clsact_filters_rescue_a_plain_TCP_connection_and_are_replaced_after_a_restart()
    {
        using LabTopology lab = LabTool.Up(new LabOptions());
        ChildProcess? restarted = null;
        try
        {
            using LabRescue rescue = await LabRescue.StartAsync(lab, LabTool.Command, wrapper: RescueLab.WithoutTcx);
            foreach (LabPopId pop in (LabPopId[])[LabPopId.A, LabPopId.B])
            {
                LabPop p = lab.Pop(pop);
                Assert.Contains($"on {p.Interface} (clsact)", rescue.Output(pop));
                Assert.Equal(Expected(lab, pop), RescueLab.AttachedPrograms(p.Namespace, p.Interface));
            }

            StreamOutcome outcome = await RescueLab.StreamAcrossFlipToBAsync(lab, rescue, Port);
            output.WriteLine(outcome.ToString());
            Assert.True(outcome.Complete, $"not rescued: {outcome}\n{rescue.Output(LabPopId.B)}");
            await Eventually.TrueAsync(() => rescue.Counters(LabPopId.A).GetValueOrDefault("program.decapsulated") > 0, "A decapsulated");

            // A clean stop takes the filters off, and the qdisc with them when the agent made it.
            LabPop a = lab.Pop(LabPopId.A);
            Assert.True(rescue.Stop(LabPopId.A), "A's agent did not stop");
            Assert.Empty(RescueLab.AttachedPrograms(a.Namespace, a.Interface));
            Assert.DoesNotContain("clsact", a.Namespace.Exec("tc", "qdisc", "show", "dev", a.Interface));

            // A killed agent's filters stay; the next one replaces them at the same handle, one filter per direction.
            LabPop b = lab.Pop(LabPopId.B);
            List<string> before = RescueLab.AttachedPrograms(b.Namespace, b.Interface);
            rescue.Kill(LabPopId.B);
            restarted = await RescueLab.RestartAgentAsync(lab, LabPopId.B, RescueLab.WithoutTcx);
            List<string> after = RescueLab.AttachedPrograms(b.Namespace, b.Interface);
            output.WriteLine($"before the kill: {string.Join("; ", before)}; after the restart: {string.Join("; ", after)}");
            Assert.Equal(Expected(lab, LabPopId.B), after);
            Assert.NotEqual(before, after);

            // The restarted agent found the qdisc there, so it cannot tell it from an operator's: it leaves it.
            Assert.True(restarted.Stop(TimeSpan.FromSeconds(20)), "the restarted agent did not stop");
            Assert.Empty(RescueLab.AttachedPrograms(b.Namespace, b.Interface));
            Assert.Contains("clsact", b.Namespace.Exec("tc", "qdisc", "show", "dev", b.Interface));
        }
        finally
        {
            restarted?.Dispose();
        }
    }

    /// <summary>The filters the agent in <paramref name="pop"/> says it attached (the ids in its status file).</summary>
    private static List<string> Expected(LabTopology lab, LabPopId pop)
    {
        using JsonDocument status = JsonDocument.Parse(File.ReadAllText(LabRescue.StatusPathOf(lab.Options.Prefix, pop)));
        Assert.Equal("clsact", status.RootElement.GetProperty("attachment").GetString());
        long[] ids = [.. status.RootElement.GetProperty("programIds").EnumerateArray().Select(id => id.GetInt64())];
        return [$"clsact-ingress {ids[0]} rescue_ingress", $"clsact-egress {ids[1]} rescue_egress"];
    }
}
