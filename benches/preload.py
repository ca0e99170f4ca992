#!/usr/bin/env python3
"""Preloads TOTAL pins into a running daemon through the PSA's POST /pins (16 connections).

Usage: preload.py PSA_URL TOKEN TOTAL [FRESH_FILE]
CIDs are raw CIDv1 of sha256("bench-<i>"). With FRESH_FILE, also writes 2,000,000 further pin
bodies (one JSON object per line, CIDs not preloaded) for load generators.
"""
import base64, hashlib, http.client, json, sys, threading, time, urllib.parse


def cid(i: int) -> str:
    digest = hashlib.sha256(b"bench-%d" % i).digest()
    return "b" + base64.b32encode(bytes([1, 0x55, 0x12, 0x20]) + digest).decode().lower().rstrip("=")


def main() -> None:
    url, token, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if len(sys.argv) > 4:
        with open(sys.argv[4], "w") as f:
            for i in range(total, total + 2_000_000):
                f.write(json.dumps({"cid": cid(i)}) + "\n")
    u = urllib.parse.urlparse(url)

    def load(start: int, step: int) -> None:
        conn = http.client.HTTPConnection(u.hostname, u.port)
        for i in range(start, total, step):
            conn.request("POST", "/pins", json.dumps({"cid": cid(i), "name": f"pin-{i}"}),
                         {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            assert r.status == 202, r.status

    t = time.time()
    threads = [threading.Thread(target=load, args=(k, 16)) for k in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    print(f"preloaded {total} pins in {time.time() - t:.1f}s")


if __name__ == "__main__":
    main()
