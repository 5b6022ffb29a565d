using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace MptcpAnycast.Rescue.Bpf;

// The structs rescue.bpf.c shares with userspace, field for field. RescueDataplane checks each map's key and value
// size against these when it loads the object, so a change on one side only fails loudly.

/// <summary><c>struct rescue_config</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct BpfRescueConfig
{
    public uint Enabled;
    public uint OwnerHintActive;
    public uint NowSeconds;
    public uint LocalIPv4;
    public fixed byte LocalIPv6[16];
    public ushort MssIPv4;
    public ushort MssIPv6;
    public uint MissReportsPerWindow;
    public ulong MissWindowNanoseconds;
    public uint AnycastIPv4Count;
    public uint AnycastIPv6Count;
    public fixed uint AnycastIPv4[InlineAnycast];
    public fixed byte AnycastIPv6[InlineAnycast * 16];

    /// <summary><c>INLINE_ANYCAST</c>: how many anycast addresses per family the program compares in place.</summary>
    public const int InlineAnycast = 8;

    /// <summary>
    /// The map value for <paramref name="config"/> and the anycast set: up to <see cref="InlineAnycast"/> addresses per
    /// family in place; a larger count tells the program to ask the anycast map instead.
    /// </summary>
    public static BpfRescueConfig From(RescueDataplaneConfig config, bool enabled, IReadOnlyList<IPAddress> anycast, bool ownerHintActive, uint nowSeconds)
    {
        var value = new BpfRescueConfig
        {
            Enabled = enabled ? 1u : 0u,
            OwnerHintActive = ownerHintActive ? 1u : 0u,
            NowSeconds = nowSeconds,
            MssIPv4 = (ushort)config.MssIPv4,
            MssIPv6 = (ushort)config.MssIPv6,
            MissReportsPerWindow = (uint)config.MissReportsPerWindow,
            MissWindowNanoseconds = (ulong)(config.MissWindow.Ticks * 100),
        };
        config.LocalIPv4?.TryWriteBytes(new Span<byte>(&value.LocalIPv4, 4), out _);
        config.LocalIPv6?.TryWriteBytes(new Span<byte>(value.LocalIPv6, 16), out _);
        IPAddress[] v4s = [.. anycast.Where(a => a.AddressFamily == AddressFamily.InterNetwork)];
        IPAddress[] v6s = [.. anycast.Where(a => a.AddressFamily == AddressFamily.InterNetworkV6)];
        value.AnycastIPv4Count = (uint)v4s.Length;
        value.AnycastIPv6Count = (uint)v6s.Length;
        for (int i = 0; i < v4s.Length && i < InlineAnycast; i++)
        {
            v4s[i].TryWriteBytes(new Span<byte>(value.AnycastIPv4 + i, 4), out _);
        }

        for (int i = 0; i < v6s.Length && i < InlineAnycast; i++)
        {
            v6s[i].TryWriteBytes(new Span<byte>(value.AnycastIPv6 + (i * 16), 16), out _);
        }

        return value;
    }
}

/// <summary><c>struct flow_key</c>: one flow, client to server, addresses and ports in network order.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct BpfFlowKey
{
    public byte Family;
    private fixed byte _pad[3];
    public ushort ClientPortNetwork;
    public ushort ServerPortNetwork;
    public fixed byte Client[16];
    public fixed byte Server[16];

    public static BpfFlowKey From(TcpFlow flow)
    {
        var key = new BpfFlowKey
        {
            Family = flow.IsIPv6 ? (byte)6 : (byte)4,
            ClientPortNetwork = BinaryPrimitives.ReverseEndianness(flow.ClientPort),
            ServerPortNetwork = BinaryPrimitives.ReverseEndianness(flow.ServerPort),
        };
        BpfAddress.Write(flow.ClientAddress, new Span<byte>(key.Client, 16));
        BpfAddress.Write(flow.ServerAddress, new Span<byte>(key.Server, 16));
        return key;
    }

    /// <summary>
    /// The flow's bit in the program's owner hint (<c>owner_hint_bit</c> in rescue.bpf.c): a multiplicative hash of
    /// both addresses, each folded to 32 bits, and both ports, all read as the packet carries them.
    /// </summary>
    public readonly uint OwnerHintBit()
    {
        fixed (byte* client = Client, server = Server)
        {
            uint ports = ClientPortNetwork | ((uint)ServerPortNetwork << 16);
            ulong x = (((ulong)Fold(client) << 32) | ports) ^ Fold(server);
            return (uint)((x * 0x9E3779B97F4A7C15UL) >> (64 - OwnerHint.BitsLog2));
        }

        static uint Fold(byte* address) =>
            Unsafe.ReadUnaligned<uint>(address) ^ Unsafe.ReadUnaligned<uint>(address + 4)
            ^ Unsafe.ReadUnaligned<uint>(address + 8) ^ Unsafe.ReadUnaligned<uint>(address + 12);
    }

    /// <summary>The flow, or null when the family byte is neither 4 nor 6 (a report the program cannot have written).</summary>
    public readonly TcpFlow? ToFlow()
    {
        if (Family is not (4 or 6))
        {
            return null;
        }

        fixed (byte* client = Client, server = Server)
        {
            return new TcpFlow(
                BpfAddress.Read(Family, new ReadOnlySpan<byte>(client, 16)),
                BinaryPrimitives.ReverseEndianness(ClientPortNetwork),
                BpfAddress.Read(Family, new ReadOnlySpan<byte>(server, 16)),
                BinaryPrimitives.ReverseEndianness(ServerPortNetwork));
        }
    }
}

/// <summary><c>struct owner</c>: the owner's unicast address (the tunnel's far end).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct BpfOwner
{
    public byte Family;
    private fixed byte _pad[3];
    public fixed byte Address[16];
    public uint UsedSeconds;
    public ulong LearnedNanoseconds;
}

/// <summary>The fixed part of <c>struct miss_report</c>; the held packet follows it.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct BpfMissReportHeader
{
    public BpfFlowKey Flow;
    public uint Sequence;
    public uint AcknowledgementSequence;
    public ushort TcpFlags;
    public ushort HeldLength;
    public uint InterfaceIndex;
}

/// <summary>Addresses as the program keys them: 16 bytes, IPv4 in the first four.</summary>
internal static class BpfAddress
{
    public static void Write(IPAddress address, Span<byte> destination)
    {
        destination.Clear();
        if (!address.Unmapped().TryWriteBytes(destination, out _))
        {
            throw new ArgumentException($"cannot write {address}", nameof(address));
        }
    }

    public static byte[] Key(IPAddress address)
    {
        var key = new byte[16];
        Write(address, key);
        return key;
    }

    public static IPAddress Read(byte family, ReadOnlySpan<byte> source) =>
        family == 4 ? new IPAddress(source[..4]) : new IPAddress(source);

    public static byte FamilyOf(IPAddress address) =>
        address.Unmapped().AddressFamily == AddressFamily.InterNetworkV6 ? (byte)6 : (byte)4;
}
