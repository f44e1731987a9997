#!/usr/bin/env python3
"""Writer-to-reader propagation: from the start of the writer's POST to the first
execution on a reader that returns the new result.

    scripts/bench-propagation.py [watch|nats] [updates=200]

watch: a release writer and reader on one shared rules directory with --watch-rules.
nats:  a private `nats-server -js` (own port and store), a writer with a rules
       directory publishing to it and a reader following it.
Each update changes the result code of one ruleset; the reader is polled without pause
on a kept-alive connection. Prints p50, p99 and max.
"""
import http.client, json, os, re, shutil, signal, statistics, subprocess, sys, tempfile, time


root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
args = sys.argv[1:]
mode = args.pop(0) if args and args[0] in ("watch", "nats") else "watch"
updates = int(args[0]) if args else 200
# Between two polls of the reader: the resolution of the measurement.
POLL_GAP = float(os.environ.get("ORDO_BENCH_POLL_GAP_MS", "0.2")) / 1000
if not os.environ.get("ORDO_BENCH_BIN"):
    subprocess.run(["cargo", "build", "--release", "-p", "ordo-server", "--quiet"], cwd=root, check=True)
binary = os.environ.get("ORDO_BENCH_BIN") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target")), "release", "ordo-server")


def start(args, log):
    proc = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", "0", "--grpc-port", "0", "--log-level",
                             "warn,ordo_server::server=info"] + args,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    for _ in range(400):
        m = re.search(r"listening on http://([0-9.:]+)", open(log).read())
        if m:
            host, port = m.group(1).rsplit(":", 1)
            return proc, http.client.HTTPConnection(host, int(port))
        time.sleep(0.025)
    sys.exit(open(log).read())


def call(conn, method, path, body):
    try:
        conn.request(method, path, json.dumps(body), {"Content-Type": "application/json"})
        r = conn.getresponse()
    except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
        # An error answered before the body was read closes the connection.
        conn.close()
        conn.request(method, path, json.dumps(body), {"Content-Type": "application/json"})
        r = conn.getresponse()
    return r.status, json.loads(r.read() or b"null")


def ruleset(code):
    return {"config": {"name": "prop", "version": "1.0.0", "entry_step": "s"},
            "steps": {"s": {"id": "s", "type": "terminal", "result": {"code": code}}}}


work = tempfile.mkdtemp()
rules = os.path.join(work, "rules")
os.mkdir(rules)
procs = []

POLLER = r"""
import http.client, json, sys, time
host, port, gap = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
conn = http.client.HTTPConnection(host, port)
body = json.dumps({"input": {}})
for line in sys.stdin:
    code = line.strip()
    print("polling", flush=True)
    start = time.monotonic()
    while True:
        try:
            conn.request("POST", "/api/v1/execute/prop", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            out = json.loads(r.read() or b"null")
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            conn.close()  # an error answered before the body was read closes it
            continue
        if r.status == 200 and out["code"] == code:
            print(time.monotonic(), flush=True)
            break
        if time.monotonic() - start > 10:
            print("timeout", flush=True)
            break
        time.sleep(gap)
"""


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(conn):
    conn = http.client.HTTPConnection(conn.host, conn.port)  # its own: a 503 may close it
    for _ in range(800):
        conn.request("GET", "/healthz/ready")
        r = conn.getresponse()
        r.read()
        if r.status == 200:
            return
        time.sleep(0.025)
    sys.exit("not ready within 20 s")


try:
    if mode == "nats":
        port = free_port()
        nats = subprocess.Popen(["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-sd",
                                 os.path.join(work, "js")], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        procs.append(nats)
        time.sleep(0.5)
        url = f"nats://127.0.0.1:{port}"
        w, wc = start(["--role", "writer", "--rules-dir", rules, "--nats-url", url],
                      os.path.join(work, "w.log"))
        procs.append(w)
        wait_ready(wc)
        r, rc = start(["--role", "reader", "--nats-url", url, "--instance-id", "bench"],
                      os.path.join(work, "r.log"))
        procs.append(r)
        wait_ready(rc)
    else:
        w, wc = start(["--role", "writer", "--rules-dir", rules, "--watch-rules"], os.path.join(work, "w.log"))
        procs.append(w)
        r, rc = start(["--role", "reader", "--rules-dir", rules, "--watch-rules"], os.path.join(work, "r.log"))
        procs.append(r)
    lat, post = [], []
    # The reader is polled by a process of its own, from the moment the POST starts
    # (the event may arrive before the writer has answered): told the code to wait for,
    # it answers with the monotonic time it first saw it (comparable across processes).
    poller = subprocess.Popen([sys.executable, "-c", POLLER, rc.host, str(rc.port), str(POLL_GAP)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    procs.append(poller)
    for i in range(updates + 1):
        code = f"C{i}"
        poller.stdin.write(code + "\n")
        poller.stdin.flush()
        assert poller.stdout.readline().strip() == "polling"
        t = time.monotonic()
        status, _ = call(wc, "POST", "/api/v1/rulesets", ruleset(code))
        posted = time.monotonic()
        assert status in (200, 201), status
        seen = poller.stdout.readline().strip()
        if seen == "timeout":
            sys.exit(f"update {i} did not reach the reader within 10 s")
        if i > 0:  # the first one also waits for the reader's first sight of the ruleset
            lat.append((float(seen) - t) * 1000)
            post.append((posted - t) * 1000)
        # Past the watcher's 200 ms spacing: each update stands alone.
        time.sleep(0.25 if mode == "watch" else float(os.environ.get("ORDO_BENCH_SPACING_MS", "50")) / 1000)
    def summary(xs):
        xs = sorted(xs)
        return (f"p50 {statistics.median(xs):.1f} ms, p99 {xs[int(len(xs) * 0.99) - 1]:.1f} ms, "
                f"max {xs[-1]:.1f} ms")
    print(f"{mode}: {updates} updates, writer POST to reader result: {summary(lat)}")
    print(f"{' ' * len(mode)}  of which the writer's POST (durable commit and file): {summary(post)}")
    if mode == "nats":
        # Where the time goes: the outbox's publish (until the stream's ack) and the
        # reader's apply (decode, hash check, compile, swap), as the servers measured.
        def mean_ms(conn, name):
            conn.request("GET", "/metrics")
            r = conn.getresponse()
            text = r.read().decode()
            total = re.search(rf"^{name}_sum (\S+)", text, re.M)
            count = re.search(rf"^{name}_count (\S+)", text, re.M)
            return float(total.group(1)) / float(count.group(1)) * 1000 if total and count else float("nan")
        print(f"{' ' * len(mode)}  mean outbox publish {mean_ms(wc, 'ordo_outbox_publish_seconds'):.2f} ms, "
              f"mean reader apply {mean_ms(rc, 'ordo_sync_apply_seconds'):.2f} ms, "
              f"mean durable commit {mean_ms(wc, 'ordo_commit_duration_seconds'):.2f} ms")
finally:
    for p in procs:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
    shutil.rmtree(work)
