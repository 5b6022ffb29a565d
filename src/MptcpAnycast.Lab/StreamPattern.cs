using System.Diagnostics;
using System.Security.Cryptography;

namespace MptcpAnycast.Lab;

/// <summary>
/// The lab's one stream of test bytes: byte <c>i</c> is <c>i mod 251</c> (a prime, so a lost, repeated or reordered
/// chunk of any power-of-two size shows). The POP server sends it, the probes and tests check it.
/// </summary>
public static class StreamPattern
{
    /// <summary>The pattern's period.</summary>
    public const int Period = 251;

    /// <summary>A block of the pattern that starts at phase 0; every offset into it is the pattern at that phase.</summary>
    private static readonly byte[] Block = MakeBlock(Period * 256);

    /// <summary>Byte <paramref name="position"/> of the stream.</summary>
    public static byte At(long position) => (byte)(position % Period);

    /// <summary>Writes the stream's bytes from <paramref name="offset"/> into <paramref name="destination"/>.</summary>
    public static void Fill(Span<byte> destination, long offset)
    {
        for (int done = 0; done < destination.Length;)
        {
            int phase = (int)((offset + done) % Period);
            int n = Math.Min(destination.Length - done, Block.Length - phase);
            Block.AsSpan(phase, n).CopyTo(destination[done..]);
            done += n;
        }
    }

    /// <summary>Whether <paramref name="chunk"/> is the stream's bytes from <paramref name="offset"/>.</summary>
    public static bool Matches(ReadOnlySpan<byte> chunk, long offset)
    {
        for (int done = 0; done < chunk.Length;)
        {
            int phase = (int)((offset + done) % Period);
            int n = Math.Min(chunk.Length - done, Block.Length - phase);
            if (!chunk.Slice(done, n).SequenceEqual(Block.AsSpan(phase, n)))
            {
                return false;
            }

            done += n;
        }

        return true;
    }

    /// <summary>The SHA-256 of the first <paramref name="length"/> bytes: what a complete stream hashes to.</summary>
    public static byte[] Sha256(long length)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        for (long done = 0; done < length;)
        {
            int n = (int)Math.Min(Block.Length, length - done);
            hash.AppendData(Block, 0, n); // the block is a whole number of periods: each one continues the stream
            done += n;
        }

        return hash.GetHashAndReset();
    }

    /// <summary>
    /// Writes the first <paramref name="total"/> bytes to <paramref name="body"/>, flushing each piece; paced at
    /// <paramref name="bytesPerSecond"/> (about 100 writes a second) or as fast as it goes when that is 0.
    /// </summary>
    public static async Task WriteAsync(Stream body, long total, long bytesPerSecond, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(body);
        const int Chunk = Period * 64;
        var clock = Stopwatch.StartNew();
        long sent = 0;
        int piece = bytesPerSecond > 0 ? (int)Math.Clamp(bytesPerSecond / 100, 1, Chunk) : Chunk;
        while (sent < total)
        {
            int phase = (int)(sent % Period);
            int n = (int)Math.Min(piece, total - sent);
            await body.WriteAsync(Block.AsMemory(phase, n), cancellationToken).ConfigureAwait(false);
            await body.FlushAsync(cancellationToken).ConfigureAwait(false);
            sent += n;
            if (bytesPerSecond > 0)
            {
                TimeSpan wait = TimeSpan.FromSeconds((double)sent / bytesPerSecond) - clock.Elapsed;
                if (wait > TimeSpan.Zero)
                {
                    await Task.Delay(wait, cancellationToken).ConfigureAwait(false);
                }
            }
        }
    }

    private static byte[] MakeBlock(int length)
    {
        byte[] block = new byte[length];
        for (int i = 0; i < block.Length; i++)
        {
            block[i] = At(i);
        }

        return block;
    }
}
