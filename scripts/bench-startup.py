#!/usr/bin/env python3
"""Time-to-ready and RSS of the release server with N rulesets in its rules directory.

    scripts/bench-startup.py [N=1000] [runs=5]

The first start imports the N files into the commit log; later starts read the log and
check the files by their size and modification time (set a minute back, as for files
written before the restart).
RSS is read 0.2 s after readiness, once the warm-up has compiled every ruleset. A first
start over many files runs the import as a one-off child process (`ordo-server import`);
its peak RSS, which it logs as it ends, is reported beside the server's.
Time-to-ready is measured from exec to the first 200 from /healthz/ready, asked as soon
as the server logs that it listens (and every 0.2 ms after that until it answers 200).
Waiting on the log line instead of polling from exec keeps the measuring process from
taking CPU from the server while it starts.
"""
import http.client, json, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, threading, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
# ORDO_BENCH_BIN measures a given binary (to compare two builds) instead of building.
binary = os.environ.get("ORDO_BENCH_BIN")
if not binary:
    subprocess.run(["cargo", "--quiet", "build-server"], cwd=root, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
    binary = os.path.join(target, "release", "ordo-server")
template = json.load(open(os.path.join(root, "crates/ordo-core/benches/data/discount.json")))
# The build just wrote the binary, so the page cache holds it as written, not as an
# exec reads it from disk (a deployment's case), and the resident code differs. Evict
# it: the first start reads it like a fresh one.
with open(binary, "rb") as f:
    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
if not os.environ.get("ORDO_BENCH_BIN"):
    subprocess.run([sys.executable, os.path.join(root, "scripts/link-order.py"), "--check"], check=False)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start(rules):
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", str(port), "--grpc-port", "0", "--rules-dir", rules,
                             "--log-level", "info"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    # Wait for the listener without spinning (a polling loop would take CPU from the
    # server on this 2-core machine), then ask /healthz/ready until it answers 200.
    child_peak = None
    for line in proc.stdout:
        if b"import done" in line:
            m = re.search(rb"peak_rss_kb=(\d+)", line)
            child_peak = int(m.group(1)) / 1024 if m else None
        if b"listening on" in line:
            break
    threading.Thread(target=lambda: proc.stdout.read(), daemon=True).start()
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/healthz/ready")
            if c.getresponse().status == 200:
                ready = time.perf_counter() - t0
                break
        except OSError:
            pass
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}")
        time.sleep(0.0002)
    time.sleep(0.2)
    rss = rss_kb(proc.pid)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    if child_peak is not None:
        child_peaks.append(child_peak)
    return ready * 1000, rss / 1024


first, restart, first_rss, restart_rss, child_peaks = [], [], [], [], []
for _ in range(runs):
    rules = tempfile.mkdtemp()
    try:
        for i in range(n):
            rs = json.loads(json.dumps(template))
            rs["config"]["name"] = f"discount-{i}"
            rs["config"]["version"] = f"1.0.{i}"
            path = os.path.join(rules, f"discount-{i}.json")
            with open(path, "w") as f:
                json.dump(rs, f, indent=2)
            # Written a while ago, as files are when a server restarts: a file modified
            # within two seconds of being read is read again at the next start.
            old = time.time() - 60
            os.utime(path, (old, old))
        t, m = start(rules); first.append(t); first_rss.append(m)
        for _ in range(3):
            t, m = start(rules); restart.append(t); restart_rss.append(m)
    finally:
        shutil.rmtree(rules)

# This VM's speed changes by the hour: a fixed CPU loop puts the figures in context.
t = time.perf_counter()
s = 0
for i in range(10_000_000):
    s += i
print(f"{n} rulesets, {runs} directories; this machine ran a 10-million-step Python loop "
      f"in {time.perf_counter() - t:.2f} s")
print(f"first start (imports {n} files): ready in median {statistics.median(first):.1f} ms "
      f"(min {min(first):.1f}, max {max(first):.1f}), RSS median {statistics.median(first_rss):.1f} MB")
print(f"restart ({len(restart)} starts): ready in median {statistics.median(restart):.1f} ms "
      f"(min {min(restart):.1f}, max {max(restart):.1f}), RSS median {statistics.median(restart_rss):.1f} MB")
if child_peaks:
    print(f"import process ({len(child_peaks)} first starts): peak RSS median {statistics.median(child_peaks):.1f} MB "
          f"(it ends before the server is ready)")
