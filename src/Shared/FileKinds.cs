using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Tmds.Linux;

namespace MptcpAnycast;

/// <summary>
/// What a path names, asked of stat(2) (symbolic links followed), and a FIFO opened without waiting: .NET's file
/// open waits in open(2) until a FIFO has a partner, which would hold a command or a starting agent forever.
/// Compiled into each assembly that reads files an operator names.
/// </summary>
internal static partial class FileKinds
{
    /// <summary>True when <paramref name="path"/> names a FIFO (or a pipe, as <c>/dev/fd/N</c> does).</summary>
    public static bool IsFifo(string path) => Mode(path) is mode_t mode && LibC.S_ISFIFO(mode);

    /// <summary>True when <paramref name="path"/> names a regular file: not a FIFO, a device, a socket or a directory.</summary>
    public static bool IsRegular(string path) => Mode(path) is mode_t mode && LibC.S_ISREG(mode);

    /// <summary>
    /// Opens the FIFO <paramref name="path"/> without waiting for its partner. To read: one that nothing writes to
    /// reads as empty at once. To write: one that nothing reads is an <see cref="IOException"/> that says so.
    /// The stream then blocks as any pipe does.
    /// </summary>
    public static FileStream OpenFifo(string path, FileAccess access)
    {
        int fd = Open(path, (access == FileAccess.Read ? LibC.O_RDONLY : LibC.O_WRONLY) | LibC.O_NONBLOCK | LibC.O_CLOEXEC);
        if (fd < 0)
        {
            int errno = LibC.errno;
            throw new IOException(errno == LibC.ENXIO && access != FileAccess.Read
                ? "it is a FIFO that nothing reads from"
                : new System.ComponentModel.Win32Exception(errno).Message);
        }

        var handle = new SafeFileHandle(fd, ownsHandle: true);
        int flags = LibC.fcntl(fd, LibC.F_GETFL, 0);
        if (flags < 0 || LibC.fcntl(fd, LibC.F_SETFL, flags & ~LibC.O_NONBLOCK) < 0)
        {
            int errno = LibC.errno;
            handle.Dispose();
            throw new IOException(new System.ComponentModel.Win32Exception(errno).Message);
        }

        return new FileStream(handle, access == FileAccess.Read ? FileAccess.Read : FileAccess.Write, bufferSize: 0);
    }

    /// <summary>
    /// The path <paramref name="path"/> leads to, every symbolic link in it resolved (realpath(3)), or null when a part
    /// of it does not exist or cannot be read. What a path's file system is must be asked of this, not of the text:
    /// <c>/var/run-link/x</c> may lie on /proc.
    /// </summary>
    public static unsafe string? RealPath(string path)
    {
        if (path.Length == 0 || path.Contains('\0', StringComparison.Ordinal))
        {
            return null;
        }

        const int PathMax = 4096;
        byte* resolved = stackalloc byte[PathMax];
        return realpath(path, resolved) is null ? null : Marshal.PtrToStringUTF8((nint)resolved);
    }

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial byte* realpath(string path, byte* resolved);

    private static unsafe mode_t? Mode(string path)
    {
        if (path.Length == 0 || path.Contains('\0', StringComparison.Ordinal))
        {
            return null; // not a file name: the open that follows says so
        }

        byte[] name = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        stat status;
        fixed (byte* p = name)
        {
            return LibC.stat(p, &status) == 0 ? status.st_mode : null;
        }
    }

    private static unsafe int Open(string path, int flags)
    {
        byte[] name = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = name)
        {
            return LibC.open(p, flags, 0);
        }
    }
}
