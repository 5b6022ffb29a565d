using System.Runtime.InteropServices;

namespace MptcpAnycast.Interop;

#pragma warning disable IDE1006 // C names

/// <summary>
/// The part of libbpf (<c>libbpf.so.1</c>, Debian's <c>libbpf1</c>, which <c>iproute2</c> already depends on) that the
/// rescue dataplane uses: open and load an object from memory, find its programs and maps, attach to tc, update and
/// read maps, poll a ring buffer, run a program on a test packet. Since libbpf 1.0 a failing call returns
/// <c>-errno</c> (or null and sets <c>errno</c>), which is what the wrappers expect.
/// </summary>
internal static unsafe partial class Libbpf
{
    private const string Library = "libbpf.so.1";

    public const uint BPF_TC_INGRESS = 1 << 0;
    public const uint BPF_TC_EGRESS = 1 << 1;
    public const uint BPF_TC_F_REPLACE = 1 << 0;

    public const ulong BPF_ANY = 0;

    public const int LIBBPF_WARN = 0;
    public const int LIBBPF_INFO = 1;
    public const int LIBBPF_DEBUG = 2;

    /// <summary><c>struct bpf_tc_hook</c> (libbpf.h).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct TcHook
    {
        public nuint sz;
        public int ifindex;
        public uint attach_point;
        public uint parent;
        private readonly uint _pad;
    }

    /// <summary><c>struct bpf_tc_opts</c> (libbpf.h).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct TcOpts
    {
        public nuint sz;
        public int prog_fd;
        public uint flags;
        public uint prog_id;
        public uint handle;
        public uint priority;
        private readonly uint _pad;
    }

    /// <summary>The head of <c>struct bpf_prog_info</c> (linux/bpf.h), up to the program's name; the kernel fills what fits.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 80)]
    public struct ProgInfo
    {
        [FieldOffset(0)] public uint type;
        [FieldOffset(4)] public uint id;
        [FieldOffset(64)] public fixed byte name[16];
    }

    /// <summary><c>struct bpf_test_run_opts</c> (bpf.h).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct TestRunOpts
    {
        public nuint sz;
        public void* data_in;
        public void* data_out;
        public uint data_size_in;
        public uint data_size_out;
        public void* ctx_in;
        public void* ctx_out;
        public uint ctx_size_in;
        public uint ctx_size_out;
        public uint retval;
        public int repeat;
        public uint duration;
        public uint flags;
        public uint cpu;
        public uint batch_size;
    }

    [LibraryImport(Library, SetLastError = true)]
    public static partial nint bpf_object__open_mem(void* obj_buf, nuint obj_buf_sz, void* opts);

    [LibraryImport(Library)]
    public static partial int bpf_object__load(nint obj);

    [LibraryImport(Library)]
    public static partial void bpf_object__close(nint obj);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint bpf_object__find_program_by_name(nint obj, string name);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint bpf_object__find_map_by_name(nint obj, string name);

    [LibraryImport(Library)]
    public static partial int bpf_program__fd(nint prog);

    [LibraryImport(Library)]
    public static partial int bpf_map__fd(nint map);

    [LibraryImport(Library)]
    public static partial uint bpf_map__key_size(nint map);

    [LibraryImport(Library)]
    public static partial uint bpf_map__value_size(nint map);

    [LibraryImport(Library)]
    public static partial uint bpf_map__max_entries(nint map);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int bpf_map__set_pin_path(nint map, string path);

    [LibraryImport(Library)]
    public static partial int bpf_map_update_elem(int fd, void* key, void* value, ulong flags);

    [LibraryImport(Library)]
    public static partial int bpf_map_lookup_elem(int fd, void* key, void* value);

    [LibraryImport(Library)]
    public static partial int bpf_map_delete_elem(int fd, void* key);

    [LibraryImport(Library)]
    public static partial int bpf_map_get_next_key(int fd, void* key, void* next_key);

    [LibraryImport(Library)]
    public static partial int bpf_map_lookup_batch(int fd, void* in_batch, void* out_batch, void* keys, void* values, uint* count, void* opts);

    [LibraryImport(Library)]
    public static partial int bpf_tc_hook_create(TcHook* hook);

    [LibraryImport(Library)]
    public static partial int bpf_tc_hook_destroy(TcHook* hook);

    [LibraryImport(Library)]
    public static partial int bpf_tc_attach(TcHook* hook, TcOpts* opts);

    [LibraryImport(Library)]
    public static partial int bpf_tc_detach(TcHook* hook, TcOpts* opts);

    [LibraryImport(Library)]
    public static partial int bpf_tc_query(TcHook* hook, TcOpts* opts);

    [LibraryImport(Library)]
    public static partial int bpf_prog_get_fd_by_id(uint id);

    [LibraryImport(Library)]
    public static partial int bpf_obj_get_info_by_fd(int bpf_fd, void* info, uint* info_len);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int bpf_obj_pin(int fd, string pathname);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int bpf_obj_get(string pathname);

    [LibraryImport(Library, SetLastError = true)]
    public static partial nint ring_buffer__new(int map_fd, delegate* unmanaged<nint, void*, nuint, int> sample_cb, nint ctx, void* opts);

    [LibraryImport(Library)]
    public static partial int ring_buffer__poll(nint rb, int timeout_ms);

    [LibraryImport(Library)]
    public static partial void ring_buffer__free(nint rb);

    [LibraryImport(Library)]
    public static partial int bpf_prog_test_run_opts(int prog_fd, TestRunOpts* opts);

    [LibraryImport(Library)]
    public static partial nint libbpf_set_print(delegate* unmanaged<int, byte*, nint, int> fn);

    /// <summary>libc's <c>vsnprintf</c>, to format libbpf's log lines (a <c>va_list</c> is a pointer on x86-64 and arm64 Linux).</summary>
    [LibraryImport("libc")]
    public static partial int vsnprintf(byte* buffer, nuint size, byte* format, nint args);
}
