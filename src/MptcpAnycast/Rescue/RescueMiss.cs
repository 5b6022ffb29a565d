namespace MptcpAnycast.Rescue;

/// <summary>
/// A segment the program could not place: not local, owner unknown. It was dropped in the kernel; <see cref="Held"/>
/// is a copy of its IP packet (null when it was too large to copy), which the agent may send to the owner once known.
/// </summary>
internal sealed record RescueMiss(TcpFlow Flow, uint Sequence, uint AcknowledgementSequence, ushort TcpFlags, byte[]? Held)
{
    public const ushort Ack = 0x10;
    public const ushort Rst = 0x04;
    public const ushort Syn = 0x02;
    public const ushort Fin = 0x01;

    public bool HasAck => (TcpFlags & Ack) != 0;
}
