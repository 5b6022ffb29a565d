#!/usr/bin/env bash
# Compiles rescue.bpf.c into rescue.bpf.o, the object committed next to it and embedded in the assembly, so that
# building the library needs no clang. With --check it compiles into a temporary file and fails when the result
# differs from the committed object (CI runs this). Needs Debian's clang, llvm and libbpf-dev.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/rescue.bpf.o"
check=0
[ "${1:-}" = "--check" ] && check=1

for tool in clang llvm-strip; do
    command -v "$tool" >/dev/null || { echo "build.sh: $tool not found (apt-get install clang llvm libbpf-dev)" >&2; exit 1; }
done
[ -f /usr/include/bpf/bpf_helpers.h ] || { echo "build.sh: /usr/include/bpf/bpf_helpers.h not found (apt-get install libbpf-dev)" >&2; exit 1; }

target="$out"
[ "$check" = 1 ] && target="$(mktemp --suffix=.bpf.o)"
multiarch="$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"
# -no-stack-slot-sharing: clang may reuse a dead pointer's spill slot for a 32-bit value, which the verifier refuses
# ("attempt to corrupt spilled pointer on stack") unless the loader has CAP_PERFMON, and the agent may run without it.
# -g gives the BTF that libbpf needs for the maps; the DWARF is stripped again and the source directory is
# mapped away, so the object is the same on every machine with the same clang.
(cd "$here" && clang -O2 -g -target bpf -mcpu=v3 -mllvm -no-stack-slot-sharing -Wall -Werror -I"/usr/include/$multiarch" \
    -fdebug-prefix-map="$here"=. -fdebug-compilation-dir=. \
    -c rescue.bpf.c -o "$target")
llvm-strip -g "$target"

if [ "$check" = 1 ]; then
    if cmp -s "$target" "$out"; then
        echo "build.sh: rescue.bpf.o matches its source"
        rm -f "$target"
    else
        echo "build.sh: rescue.bpf.o differs from what rescue.bpf.c compiles to; run src/MptcpAnycast/Rescue/Bpf/build.sh and commit the object" >&2
        rm -f "$target"
        exit 1
    fi
fi
