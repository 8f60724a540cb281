# shellcheck shell=bash
# The benchmarks' history generator (sourced by spawn_sync.sh and spawn_history.sh; see
# benches/README.md): size*40 files of base64 text, then commits rewriting 4 random files until
# about SIZE MiB of history exist. Deterministic for a given SEED (set by the caller).

generate() {
  local size="$1" dir="$2"
  git init -q -b main "$dir"
  python3 - "$size" "$SEED" <<'PY' | git -C "$dir" fast-import --quiet
import base64, random, sys
size_mb, seed = float(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
target = int(size_mb * 1024 * 1024)
nfiles = max(100, int(size_mb * 40))
paths = [f"d{i // 100:03d}/f{i % 100:03d}.txt" for i in range(nfiles)]
out = sys.stdout.buffer
written = 0
def commit(i, changes, msg):
    global written
    out.write(f"commit refs/heads/main\ncommitter Bench <bench@example.invalid> "
              f"{1700000000 + i * 60} +0000\n".encode())
    m = msg.encode()
    out.write(b"data %d\n%s\n" % (len(m), m))
    for p in changes:
        n = rng.randint(1024, 7168)
        written += n + 300  # blob plus its share of the rewritten trees
        d = base64.encodebytes(rng.randbytes(n))
        out.write(b"M 100644 inline %s\ndata %d\n%s\n" % (p.encode(), len(d), d))
i = 0
commit(i, paths, "initial import")
while written < target:
    i += 1
    commit(i, rng.sample(paths, 4), f"change {i}")
out.flush()
PY
  git -C "$dir" gc -q
  git -C "$dir" checkout -q -f main
}
