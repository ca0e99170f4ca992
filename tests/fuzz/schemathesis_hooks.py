"""Schemathesis hooks for the Pinning Service API fuzz run.

The official schema types `cid`, `origins` and request IDs as plain strings, so
its examples ("Qm1", "QmCIDToBePinned", "/p2p/QmSourcePeerId") are not real
CIDs or multiaddrs, and a correct server must refuse them. These hooks turn
every generated *string* in those places into a real value derived from it
(the same string always maps to the same value, so uniqueness and list
lengths, which the negative cases rely on, are kept). Values of the wrong type
are left alone for the negative cases.
"""
import base64
import hashlib
import os

import schemathesis


def _b32(data: bytes) -> str:
    return "b" + base64.b32encode(data).decode().lower().rstrip("=")


def _cid(text: str) -> str:
    """A CIDv1 (raw, sha2-256) derived from `text`."""
    return _b32(bytes([0x01, 0x55, 0x12, 0x20]) + hashlib.sha256(text.encode()).digest())


# A real Ed25519 peer ID (identity multihash of a protobuf public key), base58.
_PEER = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"


def _origin(text: str) -> str:
    port = 1 + int(hashlib.sha256(text.encode()).hexdigest()[:4], 16)
    return f"/ip4/127.0.0.1/tcp/{port}/p2p/{_PEER}"


def _known_requestid(text):
    known = os.environ.get("PSA_KNOWN_CID")
    return known if known and isinstance(text, str) else text


def _map_body(body):
    if isinstance(body, dict):
        if isinstance(body.get("cid"), str):
            body["cid"] = _cid(body["cid"])
        origins = body.get("origins")
        if isinstance(origins, list):
            body["origins"] = [_origin(o) if isinstance(o, str) else o for o in origins]
    return body


def _map_query(query):
    if isinstance(query, dict) and isinstance(query.get("cid"), str):
        query["cid"] = ",".join(_cid(c) for c in query["cid"].split(","))
    elif isinstance(query, dict) and isinstance(query.get("cid"), list):
        query["cid"] = [_cid(c) if isinstance(c, str) else c for c in query["cid"]]
    return query


@schemathesis.hook
def before_call(context, case, kwargs):
    """Runs before every request of every phase (examples included)."""
    case.body = _map_body(case.body)
    case.query = _map_query(case.query)
    if isinstance(case.path_parameters, dict) and "requestid" in case.path_parameters:
        case.path_parameters["requestid"] = _known_requestid(case.path_parameters["requestid"])


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Keeps every failure but one deliberate choice of ours: a `Pin` body with a
    field the spec does not define is refused with 400 naming the field (a typo
    such as `orgins` must not be silently ignored), although the schema does not
    say `additionalProperties: false`."""
    deliberate = (
        failure.code == "ST202"
        and response is not None
        and response.status_code == 400
        and "unknown field" in response.text_lossy()
    )
    return not deliberate
