using MptcpAnycast.Interop;

namespace MptcpAnycast.Tests.Interop;

public sealed class ProcFilesTests
{
    private static readonly string[] MountInfo =
    [
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
        "23 22 0:21 / /sys rw,nosuid shared:2 - sysfs sysfs rw",
        "24 23 0:22 / /sys/fs/bpf rw,nosuid shared:3 - bpf bpf rw,mode=700",
        "25 22 0:23 / /tmp rw shared:4 - tmpfs tmpfs rw",
        "26 25 0:24 / /tmp/pins rw shared:5 - tmpfs tmpfs rw",
        "27 25 0:25 / /tmp/pins rw shared:6 - bpf bpf rw",
        @"28 25 0:26 / /tmp/with\040space rw shared:7 - bpf bpf rw",
        "29 22 0:27 / /srv rw shared:8 master:2 propagate_from:3 - xfs /dev/sdb rw",
        "malformed line",
        "30 22 0:28 / /truncated rw -",
    ];

    [Theory]
    [InlineData("/", "ext4")]
    [InlineData("/home/user", "ext4")]
    [InlineData("/sys", "sysfs")]
    [InlineData("/sys/fs/bpf", "bpf")]
    [InlineData("/sys/fs/bpf/rescue", "bpf")]
    [InlineData("/sys/fs/bpfx", "sysfs")] // a mount point is a whole path component, not a prefix of one
    [InlineData("/tmp/pins", "bpf")] // the later of two mounts on one point hides the earlier
    [InlineData("/tmp/with space/x", "bpf")]
    [InlineData("/srv/data", "xfs")] // optional fields before the separator
    [InlineData("/truncated", "ext4")] // a line without a type after the separator is skipped
    public void The_file_system_of_a_path_is_the_last_mount_with_the_longest_mount_point_over_it(string path, string expected) =>
        Assert.Equal(expected, ProcFiles.FileSystemOf(path, MountInfo));

    [Fact]
    public void Without_a_mount_over_the_path_there_is_no_answer() =>
        Assert.Null(ProcFiles.FileSystemOf("/sys/x", ["23 22 0:21 / /sys/fs rw - sysfs sysfs rw"]));

    [Fact]
    public void This_process_sees_proc_on_proc()
    {
        Assert.Equal("proc", ProcFiles.FileSystemOf("/proc"));
        Assert.Equal("proc", ProcFiles.FileSystemOf("/proc/self/"));
    }
}
