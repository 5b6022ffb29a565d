using MptcpAnycast.Interop;

namespace MptcpAnycast.Rescue.Bpf;

/// <summary>
/// What an agent pins in its bpffs directory: the owner map (libbpf pins it at load and hands a restarted agent the same
/// map) and the attached tcx programs. An agent started after a crash opens
/// its predecessor's programs from these files, which needs only permission on the files, where opening them by id
/// needs CAP_SYS_ADMIN, and so swaps them for its own in one step. A clean stop detaches the programs and removes the
/// pins, which would otherwise keep the detached programs loaded.
/// </summary>
internal sealed record RescuePins(string Owners, string Ingress, string Egress)
{
    /// <summary>The pins of agent <paramref name="agentName"/> in <paramref name="directory"/>.</summary>
    public static RescuePins In(string directory, string agentName) => new(
        Path.Combine(directory, $"rescue_owners_{agentName}"),
        Path.Combine(directory, $"rescue_ingress_{agentName}"),
        Path.Combine(directory, $"rescue_egress_{agentName}"));

    public string PathOf(bool ingress) => ingress ? Ingress : Egress;

    /// <summary>A descriptor of the program pinned at <paramref name="path"/>, or -1 when there is none or it cannot be opened.</summary>
    public static int Open(string path, List<string> warnings)
    {
        int fd = Libbpf.bpf_obj_get(path);
        if (fd >= 0)
        {
            return fd;
        }

        if (fd != -Errno.ENOENT)
        {
            warnings.Add($"cannot open the earlier rescue agent's pinned program {path}: {NativeSocket.DescribeErrno(-fd)} (errno {-fd})");
        }

        return -1;
    }

    /// <summary>
    /// Pins <paramref name="programFd"/> at <paramref name="path"/> in place of what is there: pinned under a new name,
    /// then renamed over the old pin, so that the path always names one program or the other. (bpffs refuses a '.' in
    /// a name, hence a prefix for the new one rather than a suffix such as ".new".)
    /// </summary>
    public static void Pin(string path, int programFd, List<string> warnings)
    {
        string fresh = Path.Combine(Path.GetDirectoryName(path)!, "new_" + Path.GetFileName(path));
        Unlink(fresh);
        int pinned = Libbpf.bpf_obj_pin(programFd, fresh);
        if (pinned < 0)
        {
            warnings.Add($"cannot pin the rescue program at {fresh}: {NativeSocket.DescribeErrno(-pinned)} (errno {-pinned}); " +
                "an agent restarted after a crash without CAP_SYS_ADMIN will not be able to replace it");
            return;
        }

        try
        {
            File.Move(fresh, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Unlink(fresh);
            warnings.Add($"cannot pin the rescue program at {path}: {e.Message}; " +
                "an agent restarted after a crash without CAP_SYS_ADMIN will not be able to replace it");
        }
    }

    /// <summary>Removes the pin at <paramref name="path"/> when it still holds program <paramref name="programId"/> (a later agent's is left).</summary>
    public static void Remove(string path, uint programId)
    {
        int fd = Libbpf.bpf_obj_get(path);
        if (fd < 0)
        {
            return;
        }

        uint pinned = TcAttachment.ProgramId(fd);
        Tmds.Linux.LibC.close(fd);
        if (pinned == programId)
        {
            Unlink(path);
        }
    }

    private static void Unlink(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A pin that cannot be removed is reported where it matters: when the next one cannot be made.
        }
    }
}
