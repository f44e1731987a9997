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

sys.setswitchinterval(0.0001)  # the POST thread and the poller hand over at once

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
    proc = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", "0", "--log-level",
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
    import threading
    for i in range(updates + 1):
        code = f"C{i}"
        done = {}

        def write():
            status, _ = call(wc, "POST", "/api/v1/rulesets", ruleset(code))
            done["status"], done["at"] = status, time.perf_counter()

        t = time.perf_counter()
        # The reader is polled from the moment the POST starts, not after it returns:
        # the event may arrive before the writer has answered.
        poster = threading.Thread(target=write)
        poster.start()
        while True:
            status, out = call(rc, "POST", "/api/v1/execute/prop", {"input": {}})
            if status == 200 and out["code"] == code:
                break
            if time.perf_counter() - t > 10:
                sys.exit(f"update {i} did not reach the reader within 10 s")
            time.sleep(POLL_GAP)  # leave the CPU to the servers (2 cores are shared)
        seen = time.perf_counter()
        poster.join()
        assert done["status"] in (200, 201), done
        if i > 0:  # the first one also waits for the reader's first sight of the file
            lat.append((seen - t) * 1000)
            post.append((done["at"] - t) * 1000)
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
