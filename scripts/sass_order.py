"""The order of a kernel's wgmma and the work around them, one letter per instruction:
'[' WARPGROUP.ARRIVE (wgmma fence), Q QGMMA, ']' WARPGROUP.DEPBAR (wgmma wait), l LDS,
m FMUL, s STSM, f FFMA (runs of 3+ as f<count>), B BAR.SYNC, T UTMASTG.

    python scripts/sass_order.py <cubin or cache dir>

A main loop should read `[QQQQ[` then loads: ptxas may move scale loads and products between
wgmma, which stalls the last one's issue (perf log session 9, v18).
"""
import glob
import os
import re
import subprocess
import sys

KEYS = (("WARPGROUP.ARRIVE", "["), ("QGMMA", "Q"), ("LDS", "l"), ("FMUL", "m"), ("DEPBAR", "]"),
        ("STSM", "s"), ("FFMA", "f"), ("BAR.SYNC", "B"), ("UTMASTG", "T"))


def order(cubin: str) -> str:
    sass = subprocess.run(["cuobjdump", "-sass", cubin], capture_output=True, text=True, check=True).stdout
    letters = []
    for line in sass.splitlines():
        m = re.match(r"^\s+/\*[0-9a-f]{4}\*/\s+(.*?);", line)
        if m:
            letters += [ch for key, ch in KEYS if key in m.group(1)][:1]
    return re.sub(r"f{3,}", lambda r: f"f{len(r.group(0))}", "".join(letters))


if __name__ == "__main__":
    path = sys.argv[1]
    for cubin in sorted(glob.glob(os.path.join(path, "*.cubin")) if os.path.isdir(path) else [path]):
        print(os.path.basename(cubin), order(cubin))
