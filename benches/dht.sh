#!/usr/bin/env bash
# DHT benchmark (issue 14), release daemon against real Kubo peers on loopback
# (scripts/kubo_peer.py; Kubo's LAN DHT /ipfs/lan/kad/1.0.0):
#  1. lookup + fetch of MIB MiB (default 64) by CID alone: Kubo B and C form the
#     DHT; our daemon (dht_mode client) bootstraps from B; then a DHT-client
#     Kubo A joins through C and adds two random files X and Y. (a) our daemon
#     pins X through the Pinning Service API with no origins, timed until
#     `pinned`; (b) a fresh Kubo F connected only to B downloads Y, timed.
#     Different files, so neither can fetch from the other (our daemon announces
#     X once pinned). Prints both times and Kubo/us (aim >= 1.0).
#  2. reprovide of PINS pinned roots (default 100,000) to a LAN DHT of 3 Kubo
#     peers: the pins come from one POST /add of PINS tiny files (each a raw
#     CIDv1 block, each its own root and pin), loaded with the reprovider off;
#     then the daemon restarts with strategy roots, max_per_second 100000,
#     concurrency CONCURRENCY (default 64), and its first run (60 s after the
#     start) is timed: CIDs/s from /id (last_run_pins / last_run_seconds), and
#     peak RSS (VmHWM) over the run and over the process' life.
# Usage: [BIN=path] [MIB=64] [PINS=100000] [CONCURRENCY=64] [ONLY=fetch|reprovide] benches/dht.sh
#   Without BIN it builds the daemon (no LTO, in /work/target-release2).
#   MAX_RUN (seconds, default 900) bounds the reprovide run: past it the partial
#   rate (run_done over the elapsed time) is printed instead. KEEP=1 keeps the work folder (logs).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ] || [ ! -f scripts/kubo_peer.py ]; then
  echo "the Kubo test peer is missing: run scripts/setup-test-deps.sh first" >&2
  exit 1
fi
if [ -z "${BIN:-}" ]; then
  CARGO_PROFILE_RELEASE_LTO=false CARGO_TARGET_DIR=/work/target-release2 \
    cargo build --release -q -p pincluster-service --bin pincluster-service
  BIN=/work/target-release2/release/pincluster-service
fi
work=$(mktemp -d)
if [ -n "${KEEP:-}" ]; then echo "work folder kept: $work" >&2; else trap 'rm -rf "$work"' EXIT; fi

BIN=$BIN WORK=$work .venv/bin/python - <<'PY'
import base64, hashlib, json, os, queue, signal, subprocess, threading, time
import urllib.request

BIN, WORK = os.environ["BIN"], os.environ["WORK"]
MIB = int(os.environ.get("MIB", "64"))
PINS = int(os.environ.get("PINS", "100000"))
CONCURRENCY = int(os.environ.get("CONCURRENCY", "64"))
MAX_RUN = float(os.environ.get("MAX_RUN", "900"))
ONLY = os.environ.get("ONLY", "")
AUTH = "Basic " + base64.b64encode(b"bench:bench-pw").decode()
children = []


def log(*args):
    print(*args, flush=True)


class Kubo:
    """One scripts/kubo_peer.py process; `cmd` sends a line and waits for its reply."""

    def __init__(self, name, *flags):
        d = os.path.join(WORK, name)
        os.makedirs(d)
        self.proc = subprocess.Popen(
            [".venv/bin/python", "scripts/kubo_peer.py", "--dir", d, *flags],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(os.path.join(d, "stderr"), "w"), text=True)
        children.append(self.proc)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        first = self.lines.get(timeout=120)
        if not first.get("ok"):
            raise RuntimeError(f"kubo {name}: {first}")
        self.peer_id, self.addrs = first["peer_id"], first["addrs"]

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def cmd(self, line, timeout=600):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.lines.get(timeout=timeout)

    def connect(self, other):
        if not self.cmd("connect " + other.addrs[0], 60).get("ok"):
            raise RuntimeError("kubo could not connect to kubo")

    def quit(self):
        try:
            self.cmd("quit", 10)
        except Exception:  # noqa: BLE001 - it is killed below anyway
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def merge(base, extra):
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = v


class Daemon:
    """A release daemon in WORK/NAME (config from `init`, loopback listeners on free ports,
    user bench:bench-pw on both APIs)."""

    def __init__(self, name, config, rust_log):
        self.dir = os.path.join(WORK, name)
        self.cfg = os.path.join(self.dir, "cfg")
        os.makedirs(self.dir)
        subprocess.run([BIN, "--config-dir", self.cfg, "init"], check=True, stdout=subprocess.DEVNULL)
        self.configure(config)
        self.rust_log = rust_log
        self.proc = None
        self.start()

    def configure(self, extra):
        path = os.path.join(self.cfg, "service.json")
        c = json.load(open(path))
        for api in ("restapi", "pinsvcapi"):
            c["api"][api]["http_listen_multiaddress"] = "/ip4/127.0.0.1/tcp/0"
            c["api"][api]["basic_auth_credentials"] = {"bench": "bench-pw"}
        c["cluster"]["listen_multiaddress"] = ["/ip4/127.0.0.1/tcp/0"]
        c["ipfs"]["listen_multiaddress"] = ["/ip4/127.0.0.1/tcp/0"]
        merge(c, extra)
        json.dump(c, open(path, "w"), indent=1)

    def start(self):
        out = os.path.join(self.dir, "out")
        env = dict(os.environ, RUST_LOG=self.rust_log)
        self.proc = subprocess.Popen([BIN, "--config-dir", self.cfg, "daemon"], env=env,
                                     stdout=open(out, "w"), stderr=open(os.path.join(self.dir, "err"), "a"))
        children.append(self.proc)
        self.pid = self.proc.pid
        for _ in range(600):
            text = open(out).read()
            if "\nready" in "\n" + text:
                break
            if self.proc.poll() is not None:
                raise RuntimeError("the daemon exited:\n" + self.log()[-3000:])
            time.sleep(0.1)
        else:
            raise RuntimeError("the daemon did not become ready")
        for line in text.splitlines():
            if line.startswith("restapi listening on "):
                self.rest = line.split()[-1]
            elif line.startswith("pinsvcapi listening on "):
                self.psa = line.split()[-1]
        self.token = http("POST", self.psa + "/token", auth=AUTH)["token"]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log(self):
        return open(os.path.join(self.dir, "err")).read()

    def id(self):
        return http("GET", self.rest + "/id", auth=AUTH)

    def kib(self, key):
        for line in open(f"/proc/{self.pid}/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return 0

    def reset_peak(self):
        with open(f"/proc/{self.pid}/clear_refs", "w") as f:
            f.write("5")

    def wait_lan_peers(self, n, timeout=60):
        deadline = time.time() + timeout
        while self.id()["ipfs"]["dht"]["lan_peers"] < n:
            if time.time() > deadline:
                raise RuntimeError(f"fewer than {n} LAN DHT peers after {timeout} s: {self.id()['ipfs']}")
            time.sleep(0.2)


def http(method, url, body=None, auth=None, headers=None, timeout=60, raw=False):
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(url, data=data, method=method)
    if auth:
        req.add_header("Authorization", auth)
    if isinstance(body, dict):
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        text = resp.read()
    return text if raw else json.loads(text)


def random_file(path, size):
    with open(path, "wb") as f:
        for _ in range(size // (1 << 20)):
            f.write(os.urandom(1 << 20))
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def fetch_bench():
    log(f"== lookup + fetch of {MIB} MiB through the LAN DHT (B, C servers; A a DHT client behind C)")
    b, c = Kubo("b"), Kubo("c")
    b.connect(c)
    d = Daemon("fetch", {"ipfs": {"bootstrap": [b.addrs[0]], "dht_mode": "client", "pin_timeout": "300s"},
                         "pin_tracker": {"max_retries": 0}},
               "warn,pincluster_ipfs=info,pincluster_tracker=info")
    d.wait_lan_peers(2)
    time.sleep(3)  # the bootstrap walk's last queries end
    a = Kubo("a", "--dht-client")
    a.connect(c)
    x, y = os.path.join(WORK, "x.bin"), os.path.join(WORK, "y.bin")
    random_file(x, MIB << 20)
    sum_y = random_file(y, MIB << 20)
    t = time.time()
    cid_x = a.cmd("add " + x)["cid"]
    cid_y = a.cmd("add " + y)["cid"]
    log(f"A added X={cid_x} and Y={cid_y} in {time.time() - t:.1f} s; waiting 10 s for its announcements")
    time.sleep(10)
    if a.peer_id in d.log():
        log("warning: our daemon already heard of A before the pin")

    # (a) our daemon: POST /pins of X, no origins, until pinned.
    bearer = "Bearer " + d.token
    t = time.time()
    http("POST", d.psa + "/pins", {"cid": cid_x, "origins": []}, auth=bearer)
    while True:
        status = http("GET", f"{d.psa}/pins/{cid_x}", auth=bearer)["status"]
        if status in ("pinned", "failed"):
            break
        time.sleep(0.05)
    ours = time.time() - t
    if status != "pinned":
        raise RuntimeError(f"our pin of X failed:\n{d.log()[-3000:]}")
    # Where the time went, from the log's timestamps: pinning -> provider found -> pinned.
    marks = {}
    for line in d.log().splitlines():
        for key, text in (("start", "pinning cid="), ("found", "found a provider in the DHT"), ("end", "pinned cid=")):
            if text in line and cid_x in line and key not in marks:
                stamp = line.split()[0].rstrip("Z")
                marks[key] = time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) + float("0" + stamp[19:])
    found = [l for l in d.log().splitlines() if "found a provider in the DHT" in l and a.peer_id in l]
    log(f"(a) our daemon: POST /pins -> pinned in {ours:.2f} s"
        f" ({'A found through the DHT' if found else 'A NOT seen as a DHT provider in the log'})")
    if len(marks) == 3:
        log(f"    from the log: first provider found {marks['found'] - marks['start']:.2f} s after the pin started"
            f" (includes the fixed delay before the lookup), fetched {marks['end'] - marks['found']:.2f} s later")

    # (b) a fresh Kubo that knows only B downloads Y.
    f = Kubo("f")
    f.connect(b)
    time.sleep(3)
    dest = os.path.join(WORK, "f-y.bin")
    t = time.time()
    ok = f.cmd(f"download {cid_y} {dest}", timeout=600).get("ok")
    kubo = time.time() - t
    if not ok or hashlib.sha256(open(dest, "rb").read()).hexdigest() != sum_y:
        raise RuntimeError("Kubo F could not download Y")
    log(f"(b) Kubo F: download -> done in {kubo:.2f} s")
    print(f"{'who':<24} {'seconds':>8} {'MiB/s':>8}")
    print(f"{'pincluster (pin X)':<24} {ours:8.2f} {MIB / ours:8.1f}")
    print(f"{'kubo F (download Y)':<24} {kubo:8.2f} {MIB / kubo:8.1f}")
    print(f"ratio kubo/us: {kubo / ours:.2f} (aim >= 1.0)", flush=True)
    d.stop()
    for k in (f, a, b, c):
        k.quit()


def count(d, statuses):
    body = http("GET", f"{d.rest}/pins?filter={statuses}", auth=AUTH, raw=True, timeout=600)
    return body.count(b"\n")


def reprovide_bench():
    log(f"== reprovide of {PINS} pinned roots to a LAN DHT of 3 Kubo peers")
    ks = [Kubo(f"k{i}") for i in range(3)]
    ks[0].connect(ks[1])
    ks[0].connect(ks[2])
    ks[1].connect(ks[2])
    ipfs = {"bootstrap": [ks[0].addrs[0]], "reprovider": {"strategy": "none"}}
    d = Daemon("reprovide", {"ipfs": ipfs, "pin_tracker": {"max_retries": 0}}, "warn")
    d.wait_lan_peers(3)

    # Load: one multipart POST /add of PINS distinct tiny files, each its own pin.
    boundary = "dhtbenchboundary"
    parts = []
    for i in range(PINS):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f{i}"\r\n'
                     f'Content-Type: application/octet-stream\r\n\r\ndht-bench {i}\r\n')
    body = ("".join(parts) + f"--{boundary}--\r\n").encode()
    t = time.time()
    out = http("POST", f"{d.rest}/add?cid-version=1&raw-leaves=true&stream-channels=false", body, auth=AUTH,
               headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}, timeout=3600)
    added = time.time() - t
    log(f"POST /add of {len(out)} files: {added:.1f} s ({len(out) / added:.0f} pins/s)")
    while True:
        left = count(d, "queued,pinning,error")
        if left == 0:
            break
        time.sleep(5)
    pinned = count(d, "pinned")
    loaded = time.time() - t
    log(f"{pinned} pinned after {loaded:.1f} s ({pinned / loaded:.0f} pins/s, add included);"
        f" load phase peak RSS {d.kib('VmHWM') / 1024:.0f} MiB")
    d.stop()

    # Run: the first run starts 60 s after the start (no earlier run recorded).
    state = os.path.join(d.cfg, "data", "reprovide.state")
    if os.path.exists(state):
        os.remove(state)
    ipfs["reprovider"] = {"strategy": "roots", "interval": "1h", "max_per_second": 100000,
                          "concurrency": CONCURRENCY}
    d.configure({"ipfs": ipfs})
    d.rust_log = "warn,pincluster_tracker=info"
    d.start()
    d.wait_lan_peers(3)
    time.sleep(2)
    # Peak RSS: the start-up's, then (reset) the idle wait's and the run's.
    life_peak, rss0 = d.kib("VmHWM"), d.kib("VmRSS")
    d.reset_peak()
    dht0 = d.id()["ipfs"]["dht"]
    while "reprovide run started" not in d.log():
        time.sleep(0.1)
    started = time.time()
    log(f"run started; RSS before it {rss0 / 1024:.0f} MiB, start-up peak {life_peak / 1024:.0f} MiB")
    partial = None
    while True:
        rep = d.id()["ipfs"]["reprovider"]
        if rep.get("last_run_end"):
            break
        if time.time() - started > MAX_RUN:
            partial = rep.get("run_done", 0)
            break
        time.sleep(1)
    elapsed = time.time() - started
    run_peak = d.kib("VmHWM")
    dht1 = d.id()["ipfs"]["dht"]
    ok = dht1["announced"] - dht0["announced"]
    bad = dht1["announce_failures"] - dht0["announce_failures"]
    if partial is None:
        rate = rep["last_run_pins"] / max(rep["last_run_seconds"], 1e-3)
        log(f"run done: {rep['last_run_pins']} CIDs in {rep['last_run_seconds']:.1f} s = {rate:.0f} CIDs/s")
    else:
        rate = partial / elapsed
        log(f"run NOT done after {MAX_RUN:.0f} s: {partial} CIDs (saved every 10 s) = {rate:.0f} CIDs/s,"
            f" a full run of {PINS} would take ~{PINS / max(rate, 1e-9):.0f} s")
    print(f"{'pins':>8} {'CIDs/s':>8} {'announced':>10} {'failed':>7} {'peak RSS run':>13} {'peak RSS life':>14}")
    print(f"{PINS:>8} {rate:8.0f} {ok:>10} {bad:>7} {run_peak / 1024:>9.0f} MiB"
          f" {max(life_peak, run_peak) / 1024:>10.0f} MiB", flush=True)
    d.stop()
    for k in ks:
        k.quit()


try:
    if ONLY in ("", "fetch"):
        fetch_bench()
    if ONLY in ("", "reprovide"):
        reprovide_bench()
finally:
    for p in children:
        if p.poll() is None:
            p.kill()
            p.wait()
PY
