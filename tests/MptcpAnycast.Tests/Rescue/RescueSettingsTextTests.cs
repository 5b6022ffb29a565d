using System.Text;
using Microsoft.Extensions.Configuration;
using MptcpAnycast.Kestrel.Rescue;

namespace MptcpAnycast.Tests.Rescue;

/// <summary>
/// The rescue settings' shape and text, checked before binding: what the binder would drop without a word is refused
/// with the key's name, and every shape a valid file or command line takes passes. Through the transport's binding;
/// <c>rescue run --config</c> runs the same check (RescueCommandLineTests).
/// </summary>
public sealed class RescueSettingsTextTests
{
    private const string Valid = """
        { "Name": "pop-a", "Interface": "eth0", "AnycastAddresses": [ "192.0.2.100", "2001:db8:ac::1" ],
          "UnicastIPv4": "198.51.100.1", "UnicastIPv6": "2001:db8:a::1",
          "Peers": [ { "Name": "pop-b", "UnicastIPv4": "198.51.100.2", "Key": "k" }, { "Name": "pop-c", "UnicastIPv6": "2001:db8:c::1" } ],
          "Port": 62201, "LookupTimeout": "00:00:00.250", "LookupsPerSecond": 2000, "OwnerIdleTimeout": "00:10:00",
          "MssIPv4": 0, "MssIPv6": 1400, "PinDirectory": "/sys/fs/bpf/x", "StatusDirectory": "/run/x" }
        """;

    private static string? Check(string rescue) =>
        RescueOptionsBinding.CheckText(new ConfigurationBuilder()
            .AddJsonStream(new MemoryStream(Encoding.UTF8.GetBytes($$"""{ "MptcpAnycast": { "Rescue": {{rescue}} } }""")))
            .Build()
            .GetSection("MptcpAnycast:Rescue"));

    [Theory]
    [InlineData(Valid)]
    [InlineData("""{ "name": "pop-a", "PEERS": [ { "name": "pop-b", "unicastipv4": "198.51.100.2" } ], "anycastaddresses": [] }""")] // any case, an empty list
    [InlineData("""{ "Name": "pop-a", "Peers": [], "AnycastAddresses": null, "Port": null }""")]
    public void A_file_of_the_right_shape_passes(string text) => Assert.Null(Check(text));

    [Fact]
    public void The_command_line_and_environment_forms_pass()
    {
        IConfiguration configuration = new ConfigurationBuilder().AddCommandLine([
            "--MptcpAnycast:Rescue:Name=pop-a", "--MptcpAnycast:Rescue:AnycastAddresses:0=192.0.2.100", "--MptcpAnycast:Rescue:AnycastAddresses:1=192.0.2.101",
            "--MptcpAnycast:Rescue:Peers:0:Name=pop-b", "--MptcpAnycast:Rescue:Peers:0:UnicastIPv4=198.51.100.2", "--MptcpAnycast:Rescue:Port=62202"]).Build();
        Assert.Null(RescueOptionsBinding.CheckText(configuration.GetSection("MptcpAnycast:Rescue")));
    }

    [Theory]
    [InlineData("""{ "Name": "pop-a", "Peers": { "pop-b": { "Name": "pop-b" } } }""",
        "MptcpAnycast:Rescue:Peers is a list, not an object ('pop-b' is not an entry's number): in JSON write \"Peers\": [ ... ], elsewhere number the entries MptcpAnycast:Rescue:Peers:0, MptcpAnycast:Rescue:Peers:1")]
    [InlineData("""{ "Peers": [ "pop-b" ] }""", "MptcpAnycast:Rescue:Peers:0 'pop-b' is one value; it is an object with Name, UnicastIPv4, UnicastIPv6, Key")]
    [InlineData("""{ "Peers": [ 5 ] }""", "MptcpAnycast:Rescue:Peers:0 '5' is one value; it is an object with Name, UnicastIPv4, UnicastIPv6, Key")]
    [InlineData("""{ "Peers": [ { "Name": "pop-b", "Adress": "198.51.100.2" } ] }""",
        "MptcpAnycast:Rescue:Peers:0:Adress is not a peer setting; the peer settings are Name, UnicastIPv4, UnicastIPv6, Key")]
    [InlineData("""{ "Peers": [ { "Name": [ "pop-b" ] } ] }""", "MptcpAnycast:Rescue:Peers:0:Name takes one value, not a list or an object")]
    [InlineData("""{ "Peers": "pop-b" }""", "MptcpAnycast:Rescue:Peers 'pop-b' is a list: write MptcpAnycast:Rescue:Peers:0:Name=pop-b (command line --MptcpAnycast:Rescue:Peers:0:Name=pop-b, environment MptcpAnycast__Rescue__Peers__0__Name=pop-b)")]
    [InlineData("""{ "Port": [ 5000 ] }""", "MptcpAnycast:Rescue:Port takes one value, not a list or an object")]
    [InlineData("""{ "LookupTimeout": { "ms": 5 } }""", "MptcpAnycast:Rescue:LookupTimeout takes one value, not a list or an object")]
    [InlineData("""{ "LookupsPerSecond": [ 1 ] }""", "MptcpAnycast:Rescue:LookupsPerSecond takes one value")]
    [InlineData("""{ "OwnerIdleTimeout": [ "00:01:00" ] }""", "MptcpAnycast:Rescue:OwnerIdleTimeout takes one value")]
    [InlineData("""{ "Name": [ "pop-a" ] }""", "MptcpAnycast:Rescue:Name takes one value")]
    [InlineData("""{ "StatusDirectory": { "path": "/run/x" } }""", "MptcpAnycast:Rescue:StatusDirectory takes one value")]
    [InlineData("""{ "AnycastAddresses": [ [ "192.0.2.100" ] ] }""", "MptcpAnycast:Rescue:AnycastAddresses:0 takes one value")]
    [InlineData("""{ "AnycastAddresses": { "a": "192.0.2.100" } }""", "MptcpAnycast:Rescue:AnycastAddresses is a list, not an object ('a' is not an entry's number)")]
    [InlineData("""{ "Name": "pop-a", "LookupTimout": "00:00:01" }""", "MptcpAnycast:Rescue:LookupTimout is not a rescue setting; the rescue settings are Name, Interface, AnycastAddresses,")]
    [InlineData("""{ "OwnerIdleTimeout": "abc" }""", "MptcpAnycast:Rescue:OwnerIdleTimeout 'abc' is not a time span; write it as hh:mm:ss, e.g. 00:10:00 for 10 minutes")]
    [InlineData("""{ "OwnerIdleTimeout": "1" }""", "MptcpAnycast:Rescue:OwnerIdleTimeout '1' is a bare number, which a time span reads as days; write it as hh:mm:ss, e.g. 00:10:00")]
    [InlineData("""{ "OwnerIdleTimeout": 1 }""", "MptcpAnycast:Rescue:OwnerIdleTimeout '1' is a bare number, which a time span reads as days")]
    [InlineData("""{ "LookupTimeout": "250" }""", "MptcpAnycast:Rescue:LookupTimeout '250' is a bare number, which a time span reads as days; write it as hh:mm:ss.fff, e.g. 00:00:00.250")]
    [InlineData("""{ "LookupTimeout": "0.5" }""", "MptcpAnycast:Rescue:LookupTimeout '0.5' is not a time span")]
    public void A_shape_the_binder_would_drop_is_refused_naming_the_key(string text, string expected)
    {
        string? problem = Check(text);
        Assert.NotNull(problem);
        Assert.StartsWith(expected, problem);
    }

    [Fact]
    public void A_long_bad_value_is_quoted_cut_short_with_its_length()
    {
        string value = new('x', 5000);
        string? problem = Check($$"""{ "Port": "{{value}}" }""");
        Assert.Equal($"MptcpAnycast:Rescue:Port '{new string('x', 57)}...' (5000 characters) is not a UDP port (1-65535)", problem);
    }
}
