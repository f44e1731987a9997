#!/usr/bin/env python3
"""Writer-to-reader propagation: from the start of the writer's POST to the first
execution on a reader that returns the new result.

    scripts/bench-propagation.py [updates=200]

Starts a release writer and reader on one shared rules directory with --watch-rules.
Each update changes the result code of one ruleset; the reader is polled without pause
on a kept-alive connection. Prints p50, p99 and max.
"""
import http.client, json, os, re, shutil, signal, statistics, subprocess, sys, tempfile, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
updates = int(sys.argv[1]) if len(sys.argv) > 1 else 200
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
try:
    w, wc = start(["--role", "writer", "--rules-dir", rules, "--watch-rules"], os.path.join(work, "w.log"))
    procs.append(w)
    r, rc = start(["--role", "reader", "--rules-dir", rules, "--watch-rules"], os.path.join(work, "r.log"))
    procs.append(r)
    lat, post = [], []
    for i in range(updates + 1):
        code = f"C{i}"
        t = time.perf_counter()
        status, _ = call(wc, "POST", "/api/v1/rulesets", ruleset(code))
        assert status in (200, 201), status
        posted = (time.perf_counter() - t) * 1000
        while True:
            status, out = call(rc, "POST", "/api/v1/execute/prop", {"input": {}})
            if status == 200 and out["code"] == code:
                break
            if time.perf_counter() - t > 10:
                sys.exit(f"update {i} did not reach the reader within 10 s")
        if i > 0:  # the first one also waits for the reader's first sight of the file
            lat.append((time.perf_counter() - t) * 1000)
            post.append(posted)
        time.sleep(0.25)  # past the watcher's 200 ms spacing: each update stands alone
    def summary(xs):
        xs = sorted(xs)
        return (f"p50 {statistics.median(xs):.1f} ms, p99 {xs[int(len(xs) * 0.99) - 1]:.1f} ms, "
                f"max {xs[-1]:.1f} ms")
    print(f"watch: {updates} updates, writer POST to reader result: {summary(lat)}")
    print(f"       of which the writer's POST (durable commit and file): {summary(post)}")
finally:
    for p in procs:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
    shutil.rmtree(work)
