#!/usr/bin/env python3
"""Writes crates/ordo-server/link/order.txt: the functions a server runs to start and to
serve, in the order the release link lays them out (see crates/ordo-server/build.rs).

    scripts/link-order.py           # regenerate the file (needs valgrind)
    scripts/link-order.py --check   # how many of its functions the current build has

The linker places the listed functions together at the start of the code, so that
starting and serving touch a few hundred kilobytes of code instead of pages scattered
over all of it (the kernel maps 64 KB around every page touched, so scattered code
costs resident memory even where it is never run).

The profile comes from callgrind over the release binary:
  1. a first start over a rules directory of 300 files (imported by a one-off child
     process, which is not profiled: what it runs leaves with it), a few requests, a
     file added and imported by the server itself, a stop;
  2. a restart over the same directory, up to readiness (listed first), then
     executions over HTTP, a batch, reads, a write, the metrics, and a stop.
Function names carry hashes of their crate's build settings: a change of compiler,
of a dependency's version or features leaves part of the file stale (those names are
ignored by the linker, not wrong). Regenerate it after such changes; --check tells.
"""
import http.client, json, os, shutil, signal, socket, subprocess, sys, tempfile, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
order_file = os.path.join(root, "crates/ordo-server/link/order.txt")
target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
binary = os.path.join(target, "release", "ordo-server")
data = os.path.join(root, "crates/ordo-core/benches/data")


def defined_functions():
    """Mangled names of the functions in the binary (its symbol table)."""
    out = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, check=True).stdout
    return {line.split()[2] for line in out.splitlines() if len(line.split()) == 3 and line.split()[1] in "tTW"}


def check():
    names = [l.strip() for l in open(order_file) if l.strip()]
    have = defined_functions()
    found = sum(1 for n in names if n in have)
    print(f"{order_file}: {found} of {len(names)} functions found in {binary} ({100 * found / max(1, len(names)):.0f}%)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"content-type": "application/json"} if body is not None else {}
    c.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    r = c.getresponse()
    r.read()
    return r.status


def wait_ready(port, proc):
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}")
        try:
            if request(port, "GET", "/healthz/ready") == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit("server not ready")


def traffic(port):
    template = json.load(open(os.path.join(data, "discount.json")))
    given = json.load(open(os.path.join(data, "discount-input.json")))
    for i in range(20):
        request(port, "POST", f"/api/v1/execute/discount-{i}", {"input": given})
    request(port, "POST", "/api/v1/execute/discount-1", {"input": given, "trace": True})
    request(port, "POST", "/api/v1/execute/discount-2/batch", {"inputs": [given, given]})
    request(port, "GET", "/api/v1/rulesets")
    request(port, "GET", "/api/v1/rulesets/discount-3")
    changed = dict(template, config=dict(template["config"], name="discount-4", version="9.9.9"))
    request(port, "PUT", "/api/v1/rulesets/discount-4", changed)
    request(port, "GET", "/health")
    request(port, "GET", "/metrics")


def write_ruleset(rules, template, name, version):
    rs = dict(template, config=dict(template["config"], name=name, version=version))
    path = os.path.join(rules, f"{name}.json")
    with open(path, "w") as f:
        json.dump(rs, f, indent=2)
    old = time.time() - 60
    os.utime(path, (old, old))


def profile(rules, out, dump_at_ready, after=lambda port: None):
    port = free_port()
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--demangle=no", "--dump-instr=no", f"--callgrind-out-file={out}.%p",
         binary, "--host", "127.0.0.1", "--port", str(port), "--grpc-port", "0", "--rules-dir", rules,
         "--log-level", "info"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(port, proc)
    dump = lambda: subprocess.run(["callgrind_control", "--dump", str(proc.pid)], check=True, capture_output=True)
    if dump_at_ready:
        dump()
    time.sleep(3)  # the warm-up reads and compiles every ruleset
    if dump_at_ready:
        dump()
    traffic(port)
    after(port)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)


def functions_in(path):
    """Functions a callgrind dump saw run, in the order it names them."""
    names, seen = [], set()
    for line in open(path, errors="replace"):
        if line.startswith(("fn=(", "cfn=(")):
            rest = line.split(")", 1)[1].strip()
            if rest and rest not in seen:
                seen.add(rest)
                names.append(rest)
    return names


def generate():
    if not shutil.which("valgrind"):
        sys.exit("valgrind not found: apt-get install valgrind")
    subprocess.run(["cargo", "--quiet", "build-server"], cwd=root, check=True)
    work = tempfile.mkdtemp()
    try:
        rules = os.path.join(work, "rules")
        os.mkdir(rules)
        template = json.load(open(os.path.join(data, "discount.json")))
        for i in range(300):
            write_ruleset(rules, template, f"discount-{i}", f"1.0.{i}")

        def hand_edit(port):
            write_ruleset(rules, template, "added", "1.0.0")
            request(port, "POST", "/api/v1/admin/reload")

        profile(rules, os.path.join(work, "first"), False, hand_edit)
        profile(rules, os.path.join(work, "restart"), True)
        # The restart's parts in order (.1 up to readiness, .2 the warm-up, the last one
        # the requests and the stop), then the first start's: what every start runs is
        # laid out first, what only serving or an import runs after it.
        part = lambda d: int(d.rsplit(".", 1)[1]) if d.count(".") > 1 else 1 << 30
        restart = sorted((d for d in os.listdir(work) if d.startswith("restart.")), key=part)
        first = sorted(d for d in os.listdir(work) if d.startswith("first."))
        if len(restart) < 3:
            sys.exit(f"expected three dumps of the restart, found {restart}")
        have = defined_functions()
        order, seen = [], set()
        for dump in restart + first:
            for name in functions_in(os.path.join(work, dump)):
                if name in have and name not in seen:
                    seen.add(name)
                    order.append(name)
    finally:
        shutil.rmtree(work)
    os.makedirs(os.path.dirname(order_file), exist_ok=True)
    with open(order_file, "w") as f:
        f.write("\n".join(order) + "\n")
    print(f"{order_file}: {len(order)} functions")


if __name__ == "__main__":
    if "--check" in sys.argv[1:]:
        check()
    else:
        generate()
