#!/usr/bin/env bash
# Adds every public symbol the build reports as undeclared (RS0016) to the project's PublicAPI.Unshipped.txt.
# Usage: .ci/update-public-api.sh src/MptcpAnycast
set -euo pipefail
proj="${1:?usage: $0 <project folder>}"
log=$(mktemp)
dotnet build "$proj" -p:TreatWarningsAsErrors=false -nologo 2>&1 >"$log" || true
python3 - "$proj" "$log" <<'PY'
import re, sys, os
proj, log = sys.argv[1], sys.argv[2]
syms = set()
for line in open(log):
    m = re.search(r"RS0016: Symbol '(.*?)' is not part of the declared public API", line)
    if m and os.path.abspath(proj) in line:
        syms.add(m.group(1))
path = os.path.join(proj, "PublicAPI.Unshipped.txt")
lines = [l.rstrip("\n") for l in open(path)] if os.path.exists(path) else ["#nullable enable"]
body = sorted(set(l for l in lines[1:] if l) | syms)
open(path, "w").write("\n".join([lines[0]] + body) + "\n")
print(f"{len(syms)} symbol(s) added to {path}")
PY
rm -f "$log"
