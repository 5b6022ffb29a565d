using System.Diagnostics;
using System.Reflection;
using System.Text;
using MptcpAnycast.Interop;

namespace MptcpAnycast.Tests.PathManagement;

/// <summary>
/// Every netlink and mptcp_pm constant we mirror, checked with <c>_Static_assert</c> against the installed kernel headers
/// (the Tmds.LibC way). Names newer than the installed headers are listed, not silently skipped.
/// </summary>
public sealed class NetlinkHeaderTests
{
    // Linux 6.1 uapi headers (Debian 12) predate these; their values come from Linux 6.18's include/uapi/linux/mptcp_pm.h.
    private static readonly HashSet<string> NewerThanInstalledHeaders =
        ["MPTCP_EVENT_LISTENER_CREATED", "MPTCP_EVENT_LISTENER_CLOSED", "MPTCP_PM_ADDR_FLAG_LAMINAR"];

    [Fact]
    public void Constants_match_the_installed_kernel_headers()
    {
        if (!File.Exists("/usr/include/linux/mptcp.h") || !File.Exists("/usr/bin/gcc"))
        {
            Assert.Fail("needs gcc and the Linux uapi headers (apt-get install gcc linux-libc-dev)");
        }

        var source = new StringBuilder("#include <sys/socket.h>\n#include <errno.h>\n#include <linux/netlink.h>\n#include <linux/genetlink.h>\n#include <linux/mptcp.h>\n");
        int checkedCount = 0;
        foreach (Type type in new[] { typeof(NetlinkConstants), typeof(MptcpPmConstants) })
        {
            foreach (FieldInfo field in type.GetFields(BindingFlags.Public | BindingFlags.Static).Where(f => f.IsLiteral))
            {
                object value = field.GetRawConstantValue()!;
                if (value is string || NewerThanInstalledHeaders.Contains(field.Name))
                {
                    continue;
                }

                long number = Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture);
                source.Append($"_Static_assert((long)({field.Name}) == {number}L || (unsigned short)({field.Name}) == {number}L, \"{field.Name} != {number}\");\n");
                checkedCount++;
            }
        }

        string file = Path.Combine(Path.GetTempPath(), $"mptcp-anycast-netlink-{Environment.ProcessId}.c");
        File.WriteAllText(file, source.ToString());
        try
        {
            var psi = new ProcessStartInfo("gcc", $"-fsyntax-only -std=c11 {file}") { RedirectStandardError = true, RedirectStandardOutput = true };
            using Process gcc = Process.Start(psi)!;
            string errors = gcc.StandardError.ReadToEnd();
            Assert.True(gcc.WaitForExit(60_000), "gcc did not finish");
            Assert.True(gcc.ExitCode == 0, errors);
        }
        finally
        {
            File.Delete(file);
        }

        Assert.True(checkedCount > 80, $"only {checkedCount} constants checked");
    }
}
