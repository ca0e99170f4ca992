#!/usr/bin/env python3
"""Checks the layering invariants of docs/ARCHITECTURE.md and that nothing reads
outside the clone.

Layering: each rule names a set of packages and the workspace crates that may
declare them as dependencies (any kind: normal, dev or build). The declared
dependencies come from `cargo metadata --no-deps`, which lists exactly what each
workspace Cargo.toml asks for, renames included.

Outside the clone: no build or test file may read the `shared` folder that sits
beside the project on our own machines; a user's clone has no such folder.

`--self-test` runs every rule against made-up metadata that breaks it, so that a
rule which could never fail is itself a failure.
"""

import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# libp2p-identity is key material and peer IDs (no networking): the config crate
# reads and writes identity.json with it. Every other libp2p crate belongs to
# the two crates that open sockets: the embedded IPFS node and the cluster's
# private transport; the IPFS node crates built on libp2p to the node alone.
NETWORKING = re.compile(r"^libp2p(-(?!identity$).+)?$")
IPFS_NODE = re.compile(r"^(rust-ipfs|connexa)$")

RULES = [
    # (description, matches a dependency name, crates allowed to declare it, dependency kinds checked)
    ("sled", re.compile(r"^sled$"), {"pincluster-state"}, {None}),
    ("the networking stack (libp2p*)", NETWORKING, {"pincluster-ipfs", "pincluster-p2p"}, {None, "dev", "build"}),
    ("the IPFS node stack (rust-ipfs, connexa)", IPFS_NODE, {"pincluster-ipfs"}, {None, "dev", "build"}),
    (
        "libp2p-identity",
        re.compile(r"^libp2p-identity$"),
        {"pincluster-ipfs", "pincluster-config", "pincluster-p2p"},
        {None, "dev", "build"},
    ),
    ("openraft", re.compile(r"^openraft$"), {"pincluster-consensus"}, {None, "dev", "build"}),
    (
        "actix-web",
        re.compile(r"^actix-web$"),
        {
            "pincluster-httpcommon",
            "pincluster-pinsvc",
            "pincluster-restapi",
            "pincluster-dashboard",
            "pincluster-gateway",
            "pincluster-service",
        },
        {None},
    ),
    # Libraries record through the `metrics` facade; only the binary chooses the exporter.
    (
        "the Prometheus exporter",
        re.compile(r"^metrics-exporter-prometheus$"),
        {"pincluster-service"},
        {None, "dev", "build"},
    ),
]

# Build and test inputs that must not read outside the clone.
SCANNED = ["tests", "scripts", "Makefile", ".ci", "crates", "benches"]
# Spelled in two parts so that this file does not match itself.
OUTSIDE = re.compile(r"\.\./" + r"shared\b")


def layering_violations(metadata):
    """Every (crate, dependency, rule) where a workspace crate declares a dependency it may not."""
    members = set(metadata.get("workspace_members", []))
    found = []
    for package in metadata["packages"]:
        if package["id"] not in members:
            continue
        for dep in package["dependencies"]:
            for description, pattern, allowed, kinds in RULES:
                if dep.get("kind") in kinds and pattern.match(dep["name"]) and package["name"] not in allowed:
                    found.append((package["name"], dep["name"], description, sorted(allowed)))
    return found


def outside_reads(root):
    """Every (path, line number) of a scanned file that reads the shared folder beside the clone."""
    found = []
    for top in SCANNED:
        path = os.path.join(root, top)
        files = [path] if os.path.isfile(path) else []
        for folder, dirs, names in os.walk(path):
            dirs[:] = [d for d in dirs if d not in ("node_modules", "target", "__pycache__")]
            files.extend(os.path.join(folder, n) for n in names)
        for name in files:
            try:
                with open(name, encoding="utf-8") as handle:
                    for number, line in enumerate(handle, 1):
                        if OUTSIDE.search(line):
                            found.append((os.path.relpath(name, root), number))
            except (UnicodeDecodeError, OSError):
                continue
    return found


def self_test():
    """Each rule must catch a made-up crate that breaks it."""
    def metadata(crate, dep, kind=None):
        return {
            "workspace_members": ["m"],
            "packages": [{"id": "m", "name": crate, "dependencies": [{"name": dep, "kind": kind}]}],
        }

    must_fail = [
        metadata("pincluster-tracker", "sled"),
        metadata("pincluster-tracker", "libp2p"),
        metadata("pincluster-config", "libp2p-swarm"),
        metadata("pincluster-tests", "libp2p-kad", "dev"),
        metadata("pincluster-restapi", "rust-ipfs"),
        metadata("pincluster-service", "connexa"),
        metadata("pincluster-model", "libp2p-identity"),
        metadata("pincluster-auth", "actix-web"),
        metadata("pincluster-p2p", "rust-ipfs"),
        metadata("pincluster-tracker", "openraft"),
        metadata("pincluster-state", "openraft", "dev"),
        metadata("pincluster-httpcommon", "metrics-exporter-prometheus"),
    ]
    must_pass = [
        metadata("pincluster-config", "libp2p-identity"),
        metadata("pincluster-ipfs", "libp2p"),
        metadata("pincluster-ipfs", "rust-ipfs"),
        metadata("pincluster-p2p", "libp2p"),
        metadata("pincluster-consensus", "openraft"),
        metadata("pincluster-state", "sled"),
        metadata("pincluster-tests", "sled", "dev"),
        metadata("pincluster-service", "metrics-exporter-prometheus"),
    ]
    failures = [m["packages"][0] for m in must_fail if not layering_violations(m)]
    failures += [m["packages"][0] for m in must_pass if layering_violations(m)]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "tests"))
        with open(os.path.join(tmp, "tests", "x.rs"), "w", encoding="utf-8") as handle:
            handle.write('let spec = root.join("../' + 'shared/spec/x.yaml");\n')
        if not outside_reads(tmp):
            failures.append("a read of the shared folder in tests/ went unnoticed")
    for failure in failures:
        print(f"check-deps: self-test: rule misjudged {failure}", file=sys.stderr)
    return not failures


def main():
    if not self_test():
        return 1
    raw = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    failed = False
    for crate, dep, description, allowed in layering_violations(json.loads(raw)):
        print(f"check-deps: {crate} depends on {dep}; only {', '.join(allowed)} may use {description}")
        failed = True
    for path, number in outside_reads(ROOT):
        print(f"check-deps: {path}:{number} reads the shared folder beside the clone, which a user's clone lacks")
        failed = True
    if not failed:
        print("check-deps: layering invariants hold; nothing reads outside the clone")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
