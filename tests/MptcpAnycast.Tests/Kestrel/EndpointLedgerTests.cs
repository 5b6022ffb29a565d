using System.Net;
using MptcpAnycast.Kestrel.Hosting;
using MptcpAnycast.PathManagement;

namespace MptcpAnycast.Tests.Kestrel;

public sealed class EndpointLedgerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ledger").FullName;

    [Fact]
    public void Leftovers_are_the_records_of_dead_processes_of_the_same_namespace_only()
    {
        var ours = new EndpointLedger(_dir, "4026532000");
        var other = new EndpointLedger(_dir, "4026532999");
        MptcpEndpoint e = new(3, IPAddress.Parse("192.0.2.2"), 0, MptcpEndpointFlags.Signal, 0);
        Assert.Null(ours.Record([e], pid: 111));   // dead
        Assert.Null(ours.Record([e with { Id = 4 }], pid: 222));   // alive
        Assert.Null(other.Record([e with { Id = 5 }], pid: 333));  // dead, another namespace

        var leftovers = ours.FindLeftovers(isAlive: pid => pid == 222);

        var only = Assert.Single(leftovers);
        Assert.Equal(111, only.Pid);
        Assert.Equal(e with { InterfaceIndex = 0 }, Assert.Single(only.Endpoints));
    }

    [Fact]
    public void Recording_nothing_removes_the_file()
    {
        var ledger = new EndpointLedger(_dir, "1");
        ledger.Record([new MptcpEndpoint(1, IPAddress.Parse("192.0.2.2"), 8080, MptcpEndpointFlags.Signal, 0)], pid: 5);
        ledger.Record([], pid: 5);
        Assert.Empty(ledger.FindLeftovers(isAlive: _ => false));
    }

    [Theory]
    [InlineData("garbage")]
    [InlineData("0 192.0.2.2 0")]        // id 0 is never an endpoint
    [InlineData("300 192.0.2.2 0")]
    [InlineData("1 not-an-ip 0")]
    [InlineData("1 192.0.2.2 70000")]
    [InlineData("1 192.0.2.2")]
    public void Half_written_or_corrupt_lines_are_skipped(string line)
    {
        IReadOnlyList<MptcpEndpoint> parsed = EndpointLedger.Parse($"{line}\n2 2001:db8::2 443\n");
        MptcpEndpoint good = Assert.Single(parsed);
        Assert.Equal(2, good.Id);
        Assert.Equal(443, good.Port);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
