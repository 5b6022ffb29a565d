using System.Diagnostics;
using System.Net;
using MptcpAnycast.Interop;
using MptcpAnycast.Netlink;
using MptcpAnycast.PathManagement;
using static MptcpAnycast.Interop.MptcpPmConstants;

namespace MptcpAnycast.Tests.PathManagement;

/// <summary>
/// Feeds mutated netlink datagrams to every reader the client uses. The only acceptable outcomes are a parse or a
/// <see cref="NetlinkFormatException"/>; anything else, or a hang, fails. Fixed seed: a failure names its iteration.
/// </summary>
public sealed class NetlinkFuzzTests
{
    private const int Seed = 20260303;
    private const int Iterations = 1_000_000;
    private const ushort FamilyId = 28;

    [Fact]
    public async Task Mutated_messages_parse_or_raise_only_the_typed_error_and_never_hang()
    {
        byte[][] corpus = Corpus();
        var random = new Random(Seed);
        int parsed = 0, rejected = 0;
        var clock = Stopwatch.StartNew();
        var worker = Task.Run(() =>
        {
            for (int i = 0; i < Iterations; i++)
            {
                byte[] input = Mutate(corpus[random.Next(corpus.Length)], corpus, random);
                try
                {
                    ParseEverything(input);
                    parsed++;
                }
                catch (NetlinkFormatException)
                {
                    rejected++;
                }
                catch (Exception ex)
                {
                    throw new InvalidOperationException($"iteration {i}: {ex.GetType().Name} for input {Convert.ToHexString(input)}", ex);
                }
            }
        });

        Task finished = await Task.WhenAny(worker, Task.Delay(TimeSpan.FromSeconds(120)));
        Assert.True(finished == worker, $"fuzzing did not finish in 120 s (a reader loops?); {parsed + rejected} done");
        await worker;
        Assert.Equal(Iterations, parsed + rejected);
        Assert.True(parsed > Iterations / 20, $"only {parsed} inputs parsed: the mutations are too destructive to test the happy paths");
        Assert.True(rejected > Iterations / 20, $"only {rejected} inputs rejected: the mutations do not reach the error paths");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(120));
    }

    /// <summary>What the client does with a datagram, every reader at once.</summary>
    private static void ParseEverything(byte[] datagram)
    {
        var reader = new NetlinkMessageReader(datagram);
        int messages = 0;
        while (reader.TryRead(out NetlinkMessage message))
        {
            Assert.True(++messages <= datagram.Length / 16);
            switch (message.Type)
            {
                case NetlinkConstants.NLMSG_ERROR:
                    _ = NetlinkError.Parse(message.Payload, message.Flags);
                    break;
                case NetlinkConstants.NLMSG_DONE:
                    _ = NetlinkError.ReadDoneErrno(message.Payload);
                    break;
                case NetlinkConstants.GENL_ID_CTRL:
                    _ = MptcpPmMessages.ReadFamily(message.Payload, MPTCP_PM_EV_GRP_NAME);
                    break;
                default:
                    byte[] payload = message.Payload.ToArray();
                    Try(() => MptcpPmMessages.ReadEvent(payload));
                    Try(() => MptcpPmMessages.ReadEndpoint(payload));
                    Try(() => MptcpPmMessages.ReadLimits(payload));
                    break;
            }
        }
    }

    private static void Try(Func<object> read)
    {
        try
        {
            _ = read();
        }
        catch (NetlinkFormatException)
        {
            // expected for some inputs; other exceptions propagate
        }
    }

    private static byte[] Mutate(byte[] original, byte[][] corpus, Random random)
    {
        byte[] data = (byte[])original.Clone();
        int rounds = 1 + random.Next(4);
        for (int r = 0; r < rounds && data.Length > 0; r++)
        {
            switch (random.Next(7))
            {
                case 0: // flip bits
                    data[random.Next(data.Length)] ^= (byte)(1 << random.Next(8));
                    break;
                case 1: // random byte
                    data[random.Next(data.Length)] = (byte)random.Next(256);
                    break;
                case 2: // truncate
                    data = data[..random.Next(data.Length)];
                    break;
                case 3: // overwrite a 16-bit length-like field with a boundary value
                    if (data.Length >= 2)
                    {
                        int at = random.Next(data.Length - 1) & ~1;
                        ushort value = (ushort)(random.Next(4) switch { 0 => 0, 1 => 3, 2 => 0xFFFF, _ => random.Next(64) });
                        data[at] = (byte)value;
                        data[at + 1] = (byte)(value >> 8);
                    }

                    break;
                case 4: // append garbage
                    byte[] tail = new byte[random.Next(1, 9)];
                    random.NextBytes(tail);
                    data = [.. data, .. tail];
                    break;
                case 5: // splice another message behind this one
                    data = [.. data, .. corpus[random.Next(corpus.Length)]];
                    break;
                default: // duplicate a slice
                    int start = random.Next(data.Length);
                    int length = random.Next(data.Length - start + 1);
                    data = [.. data, .. data.AsSpan(start, length)];
                    break;
            }
        }

        return data;
    }

    private static byte[][] Corpus()
    {
        var list = new List<byte[]>();
        byte[] buffer = new byte[MptcpPmMessages.MaxRequestSize];
        int n = MptcpPmMessages.WriteAnnounce(buffer, FamilyId, 1, 0xAABBCCDD, 3, IPAddress.Parse("198.51.100.1"), 6001);
        list.Add(buffer[..n]);
        list.Add(NetlinkCodecTests.Message(FamilyId, 0, 0, MptcpPmMessagesTests.EventPayload(MPTCP_EVENT_SUB_ESTABLISHED, false)));
        list.Add(NetlinkCodecTests.Message(FamilyId, 0, 0, MptcpPmMessagesTests.EventPayload(MPTCP_EVENT_ANNOUNCED, true)));
        list.Add(NetlinkCodecTests.Message(NetlinkConstants.GENL_ID_CTRL, 0, 1,
            MptcpPmMessagesTests.FamilyPayload(FamilyId, ("mptcp_pm_cmds", 5), ("mptcp_pm_events", 6))));
        list.Add(NetlinkCodecTests.Message(NetlinkConstants.NLMSG_ERROR, NetlinkConstants.NLM_F_CAPPED | NetlinkConstants.NLM_F_ACK_TLVS, 2,
            NetlinkCodecTests.ErrorPayload(-22, 16, false, "invalid token", 24)));
        list.Add(NetlinkCodecTests.Message(NetlinkConstants.NLMSG_ERROR, NetlinkConstants.NLM_F_ACK_TLVS, 2,
            NetlinkCodecTests.ErrorPayload(-22, 40, true, "invalid addr id", null)));
        list.Add(NetlinkCodecTests.Message(NetlinkConstants.NLMSG_DONE, NetlinkConstants.NLM_F_MULTI, 3, [0, 0, 0, 0]));

        var w = new NetlinkWriter(buffer);
        w.WriteGenericHeader(MPTCP_PM_CMD_GET_ADDR, 1);
        NestedScope nest = w.BeginNested(MPTCP_PM_ATTR_ADDR);
        w.WriteU16(MPTCP_PM_ADDR_ATTR_FAMILY, 2);
        w.WriteU8(MPTCP_PM_ADDR_ATTR_ID, 1);
        w.WriteBytes(MPTCP_PM_ADDR_ATTR_ADDR4, [192, 0, 2, 10]);
        w.WriteU32(MPTCP_PM_ADDR_ATTR_FLAGS, 1);
        w.EndNested(nest);
        byte[] endpoint = NetlinkCodecTests.Message(FamilyId, NetlinkConstants.NLM_F_MULTI, 3, buffer[..w.Length]);
        list.Add([.. endpoint, .. endpoint, .. list[^2]]); // a multi-part dump: two entries and DONE
        return [.. list];
    }
}
