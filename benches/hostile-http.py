"""Load test of issue 17 (run by benches/hostile-http.sh): a well-behaved client
pins and lists on both APIs, first against an idle daemon, then while this
process holds IDLE idle and TRICKLE trickling connections against each API
(reconnecting whatever the daemon closes). Prints the client's error rate and
p50/p99 latency for both phases and the daemon's RSS. Loopback only; bounded
in connections and time. Standard library only.

Usage: hostile-http.py PSA_URL REST_URL PID [SECONDS] [IDLE] [TRICKLE]
"""

import base64
import hashlib
import http.client
import json
import selectors
import socket
import sys
import threading
import time

PSA, REST, PID = sys.argv[1], sys.argv[2], int(sys.argv[3])
SECONDS = int(sys.argv[4]) if len(sys.argv) > 4 else 30
IDLE = int(sys.argv[5]) if len(sys.argv) > 5 else 5000
TRICKLE = int(sys.argv[6]) if len(sys.argv) > 6 else 200
AUTH = "Basic " + base64.b64encode(b"bench:bench-pw").decode()
PACE = 0.01  # seconds between two of the client's requests


def hostport(url):
    host, port = url.replace("http://", "").split(":")
    return host, int(port)


def b32(data):
    return base64.b32encode(data).decode().lower().rstrip("=")


def fake_cid(n):
    """A CIDv1 (raw, sha2-256) of content that exists nowhere."""
    digest = hashlib.sha256(b"hostile-%d-%f" % (n, time.time())).digest()
    return "b" + b32(bytes([0x01, 0x55, 0x12, 0x20]) + digest)


def rss_kib():
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Client:
    """The well-behaved client: one keep-alive connection per API."""

    def __init__(self):
        self.psa = http.client.HTTPConnection(*hostport(PSA), timeout=30)
        self.rest = http.client.HTTPConnection(*hostport(REST), timeout=30)
        self.n = 0

    def call(self, conn, method, path, body=None):
        headers = {"Authorization": AUTH}
        if body is not None:
            headers["Content-Type"] = "application/json"
        start = time.perf_counter()
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            ok = 200 <= response.status < 300
            if not ok:
                print(f"  {method} {path}: {response.status}", file=sys.stderr)
        except (OSError, http.client.HTTPException) as error:
            print(f"  {method} {path}: {error}", file=sys.stderr)
            conn.close()
            ok = False
        return ok, time.perf_counter() - start

    def run(self, seconds):
        latencies, errors = [], 0
        end = time.time() + seconds
        while time.time() < end:
            self.n += 1
            cid = fake_cid(self.n)
            ops = [
                (self.psa, "POST", "/pins", json.dumps({"cid": cid, "name": f"h{self.n}"})),
                (self.psa, "GET", "/pins?status=queued,pinning,pinned,failed&limit=10", None),
                (self.rest, "POST", f"/pins/{fake_cid(-self.n)}", None),
                (self.rest, "GET", f"/pins/{cid}", None),
            ]
            for conn, method, path, body in ops:
                ok, latency = self.call(conn, method, path, body)
                latencies.append(latency)
                errors += 0 if ok else 1
                time.sleep(PACE)
        return latencies, errors


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


class Hostile:
    """IDLE idle and TRICKLE trickling connections per API, kept up."""

    def __init__(self, targets):
        self.sel = selectors.DefaultSelector()
        self.targets = targets
        self.trickling = {}  # socket -> (target, bytes sent)
        self.reconnects = 0
        self.stop = False
        self.head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"p" * 100000

    def open(self, target, trickle):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect_ex(target)
        except OSError:
            s.close()
            return
        self.sel.register(s, selectors.EVENT_READ, (target, trickle))
        if trickle:
            self.trickling[s] = 0

    def held(self):
        return len(self.sel.get_map())

    def run(self):
        for target in self.targets:
            for _ in range(IDLE):
                self.open(target, False)
            for _ in range(TRICKLE):
                self.open(target, True)
        next_trickle = time.time()
        while not self.stop:
            for key, _ in self.sel.select(timeout=0.05):
                s = key.fileobj
                target, trickle = key.data
                try:
                    data = s.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    continue  # the 408; the close follows
                self.sel.unregister(s)
                self.trickling.pop(s, None)
                s.close()
                self.reconnects += 1
                self.open(target, trickle)
            if time.time() >= next_trickle:
                next_trickle += 0.2
                for s, sent in list(self.trickling.items()):
                    try:
                        s.send(self.head[sent:sent + 1])
                        self.trickling[s] = sent + 1
                    except (BlockingIOError, OSError):
                        pass
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()


def report(name, latencies, errors):
    n = len(latencies)
    print(f"{name:>10}: {n} requests, {errors} errors ({100.0 * errors / max(n, 1):.2f} %), "
          f"p50 {percentile(latencies, 0.5) * 1000:.1f} ms, p99 {percentile(latencies, 0.99) * 1000:.1f} ms")


def main():
    client = Client()
    rss_start = rss_kib()
    idle_lat, idle_err = client.run(SECONDS)
    rss_idle = rss_kib()
    hostile = Hostile([hostport(PSA), hostport(REST)])
    thread = threading.Thread(target=hostile.run, daemon=True)
    thread.start()
    while hostile.held() < 2 * (IDLE + TRICKLE) * 0.95 and thread.is_alive():
        time.sleep(0.2)
    print(f"holding {hostile.held()} hostile connections")
    rss_peak = [rss_kib()]
    done = threading.Event()

    def sample():
        while not done.wait(1.0):
            rss_peak[0] = max(rss_peak[0], rss_kib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    load_lat, load_err = client.run(SECONDS)
    held_at_end = hostile.held()
    done.set()
    hostile.stop = True
    thread.join()
    print()
    report("idle", idle_lat, idle_err)
    report("hostile", load_lat, load_err)
    ratio = percentile(load_lat, 0.99) / percentile(idle_lat, 0.99)
    print(f"p99 hostile / idle: {ratio:.2f} (target <= 10)")
    print(f"hostile connections held at the end: {held_at_end}; reconnects after the daemon closed one: "
          f"{hostile.reconnects}")
    print(f"daemon RSS: {rss_start // 1024} MiB at start, {rss_idle // 1024} MiB after the idle phase, "
          f"{rss_peak[0] // 1024} MiB peak under load, {rss_kib() // 1024} MiB after")
    ok = idle_err == 0 and load_err == 0 and ratio <= 10
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


main()
