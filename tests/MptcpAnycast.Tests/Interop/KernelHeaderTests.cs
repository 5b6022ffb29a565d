using System.Diagnostics;
using System.Reflection;
using System.Text;
using MptcpAnycast.Interop;
using Xunit.Abstractions;

namespace MptcpAnycast.Tests.Interop;

/// <summary>
/// Every constant and struct offset we mirror from the kernel is compiled against the machine's own headers with
/// <c>_Static_assert</c>. Names the installed headers do not have (they are older than the running kernel) are
/// listed and left out; everything else must match.
/// </summary>
public sealed class KernelHeaderTests(ITestOutputHelper output)
{
    private const string Includes = """
        #include <stddef.h>
        #include <errno.h>
        #include <sys/socket.h>
        #include <netinet/in.h>
        #include <linux/tcp.h>
        #include <linux/mptcp.h>
        #include <linux/netlink.h>
        #include <linux/genetlink.h>
        #include <linux/filter.h>
        #include <linux/sched.h>
        #include <linux/sock_diag.h>
        #include <linux/inet_diag.h>
        #include <linux/bpf.h>
        """;

    /// <summary>
    /// Classes whose constants are not C macros of the same name: C# constant name -> C expression. The TCP states live
    /// in a kernel-internal header; <c>linux/bpf.h</c> repeats them as <c>BPF_TCP_*</c>, which the kernel asserts equal.
    /// </summary>
    private static readonly Dictionary<Type, Func<string, string>> Layouts = new()
    {
        [typeof(InetDiagSockIdLayout)] = name => StructMember("inet_diag_sockid", name),
        [typeof(InetDiagReqV2Layout)] = name => StructMember("inet_diag_req_v2", name),
        [typeof(InetDiagMsgLayout)] = name => StructMember("inet_diag_msg", name),
        [typeof(TcpStates)] = name => $"BPF_{name}",
        [typeof(MptcpInfoLayout)] = name => name == "Size" ? "sizeof(struct mptcp_info)" : $"offsetof(struct mptcp_info, {name})",
        [typeof(MptcpSubflowLayout)] = name => name switch
        {
            "SubflowDataSize" => "sizeof(struct mptcp_subflow_data)",
            "SubflowAddrsSize" => "sizeof(struct mptcp_subflow_addrs)",
            "ss_local" or "ss_remote" => $"offsetof(struct mptcp_subflow_addrs, {name})",
            _ => $"offsetof(struct mptcp_subflow_data, {name})",
        },
    };

    /// <summary>
    /// Values that only make sense against headers as new as the running kernel: a struct's size is checked only
    /// when the headers have its last field.
    /// </summary>
    private static readonly Dictionary<string, string> Presence = new()
    {
        ["MptcpInfoLayout.Size"] = "offsetof(struct mptcp_info, mptcpi_last_ack_recv)",
    };

    /// <summary>C expressions whose C type differs from ours: NLA_TYPE_MASK is ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER), an int; we keep its u16 value.</summary>
    private static readonly Dictionary<string, string> Casts = new()
    {
        ["NLA_TYPE_MASK"] = "(unsigned short)(NLA_TYPE_MASK)",
    };

    private static string StructMember(string type, string name) =>
        name == "Size" ? $"sizeof(struct {type})" : $"offsetof(struct {type}, {name})";

    public static IEnumerable<(string Name, string Expression, long Value)> MirroredValues()
    {
        IEnumerable<Type> constantClasses = typeof(MptcpConstants).Assembly.GetTypes()
            .Where(t => t.Namespace == typeof(MptcpConstants).Namespace && t.IsAbstract && t.IsSealed); // static classes
        foreach (Type type in constantClasses)
        {
            foreach (FieldInfo field in type.GetFields(BindingFlags.Public | BindingFlags.Static | BindingFlags.DeclaredOnly).Where(f => f.IsLiteral))
            {
                object raw = field.GetRawConstantValue()!;
                if (raw is string text)
                {
                    // A string macro ("mptcp_pm"): the compiler can check its length, not its text.
                    yield return ($"{type.Name}.{field.Name}", $"sizeof({field.Name})", text.Length + 1);
                    continue;
                }

                long value = Convert.ToInt64(raw, System.Globalization.CultureInfo.InvariantCulture);
                string expression = Layouts.TryGetValue(type, out Func<string, string>? layout) ? layout(field.Name)
                    : Casts.TryGetValue(field.Name, out string? cast) ? cast : field.Name;
                yield return ($"{type.Name}.{field.Name}", expression, value);
            }
        }
    }

    [Fact]
    public void Mirrored_constants_and_offsets_match_the_installed_kernel_headers()
    {
        if (!File.Exists("/usr/include/linux/mptcp.h"))
        {
            Assert.Fail("kernel headers missing: apt-get install linux-libc-dev gcc");
        }

        var checkedNames = new List<string>();
        var missing = new List<string>();
        var wrong = new List<string>();
        foreach ((string name, string expression, long value) in MirroredValues())
        {
            // First: does the installed header know the name at all?
            string probe = Presence.TryGetValue(name, out string? p) ? p : expression;
            if (!Compiles($"long long probe = (long long)({probe});"))
            {
                missing.Add($"{name} ({expression})");
                continue;
            }

            checkedNames.Add(name);
            if (!Compiles($"_Static_assert((long long)({expression}) == {value}LL, \"{name}\");"))
            {
                wrong.Add($"{name}: we say {value}, the headers disagree ({expression})");
            }
        }

        output.WriteLine($"checked {checkedNames.Count}: {string.Join(", ", checkedNames)}");
        output.WriteLine($"not in the installed headers (left out) {missing.Count}: {string.Join(", ", missing)}");
        Assert.Empty(wrong);
        Assert.Contains("Errno.ENOBUFS", checkedNames);
        Assert.Contains("NativeNamespace.CLONE_NEWNET", checkedNames);
        Assert.Contains("InetDiagReqV2Layout.Size", checkedNames);
        Assert.Contains("InetDiagMsgLayout.Size", checkedNames);
        Assert.Contains("TcpStates.TCP_LISTEN", checkedNames);
        Assert.True(checkedNames.Count >= 100, $"only {checkedNames.Count} names could be checked; are the headers installed?");
    }

    [Fact]
    public void A_wrong_value_is_caught_by_the_compiler_check()
    {
        // Guards the guard: the same check must fail for a value that is off by one.
        Assert.True(Compiles("_Static_assert((long long)(IPPROTO_MPTCP) == 262LL, \"ok\");"));
        Assert.False(Compiles("_Static_assert((long long)(IPPROTO_MPTCP) == 263LL, \"off by one\");"));
    }

    private static bool Compiles(string body)
    {
        string dir = Path.Combine(Path.GetTempPath(), "mptcp-anycast-headers");
        Directory.CreateDirectory(dir);
        string file = Path.Combine(dir, $"{Guid.NewGuid():N}.c");
        File.WriteAllText(file, $"{Includes}\n{body}\n", Encoding.ASCII);
        try
        {
            var psi = new ProcessStartInfo("gcc")
            {
                ArgumentList = { "-fsyntax-only", "-std=gnu11", file },
                RedirectStandardError = true,
                RedirectStandardOutput = true,
            };
            using Process gcc = Process.Start(psi)!;
            gcc.StandardError.ReadToEnd();
            gcc.StandardOutput.ReadToEnd();
            Assert.True(gcc.WaitForExit(30_000), "gcc did not finish in 30 s");
            return gcc.ExitCode == 0;
        }
        finally
        {
            File.Delete(file);
        }
    }
}
