#!/usr/bin/env python3
"""Writes the seed corpus for fuzz/frame_fuzzer.cc into the directory given as argv[1].

Seeds are framed ring.pb.Request messages of every kind (plus a few Responses, which the
fuzzer also decodes) and framing edge cases. Messages are encoded by hand with the standard
library only; field numbers come from proto/ring.proto. Every seed starts with the
fuzzer's control bytes (see the layout comment in fuzz/frame_fuzzer.cc):
  byte 0: low 4 bits = number of chunk-size bytes that follow, high 4 bits = limit
  selector (0 = the 8 MiB default, k = 2^(k+1) bytes).

Usage: python3 fuzz/make_corpus.py fuzz/corpus
"""

import hashlib
import os
import struct
import sys

# Wire types (protobuf encoding spec).
VARINT = 0
LEN = 2


def varint(n):
    """Base-128 varint; negative int32/enum values are sign-extended to 64 bits."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tag(field, wire_type):
    return varint((field << 3) | wire_type)


def uint(field, n):
    return tag(field, VARINT) + varint(n)


def bytes_field(field, data):
    if isinstance(data, str):
        data = data.encode()
    return tag(field, LEN) + varint(len(data)) + data


def message(field, *parts):
    return bytes_field(field, b"".join(parts))


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


def control(chunk_sizes=(), limit_selector=0):
    assert len(chunk_sizes) < 16 and 0 <= limit_selector < 16
    return bytes([(limit_selector << 4) | len(chunk_sizes)]) + bytes(chunk_sizes)


# --- ring.pb.Request ----------------------------------------------------------------------
def request(req_id, body, shard=0, map_version=0, client_id=0, seq=0):
    parts = [uint(1, req_id)]
    if shard:
        parts.append(uint(2, shard))
    if map_version:
        parts.append(uint(3, map_version))
    if client_id:
        parts.append(uint(4, client_id))
    if seq:
        parts.append(uint(5, seq))
    parts.append(body)
    return b"".join(parts)


def get(key):
    return message(10, bytes_field(1, key))


def put(key, value):
    return message(11, bytes_field(1, key), bytes_field(2, value))


def delete(key):
    return message(12, bytes_field(1, key))


def cas(key, expected=None, value=b"", expect_absent=False):
    parts = [bytes_field(1, key)]
    if expected is not None:
        parts.append(bytes_field(2, expected))
    if expect_absent:
        parts.append(uint(3, 1))
    parts.append(bytes_field(4, value))
    return message(13, *parts)


def batch_get(keys):
    return message(14, *[bytes_field(1, k) for k in keys])


def batch_put(pairs):
    return message(15, *[message(1, bytes_field(1, k), bytes_field(2, v)) for k, v in pairs])


def ping(payload):
    return message(16, bytes_field(1, payload))


def node_status():
    return message(17)


# --- ring.pb.Response ---------------------------------------------------------------------
def response(resp_id, body=b"", code=0, msg="", leader=None, map_version=0):
    parts = [uint(1, resp_id)]
    if code:
        parts.append(uint(2, code))
    if msg:
        parts.append(bytes_field(3, msg))
    if leader is not None:
        parts.append(message(4, bytes_field(1, leader), uint(2, map_version)))
    parts.append(body)
    return b"".join(parts)


def requests_of_every_kind():
    return {
        "get": request(1, get("user:1000")),
        "put": request(2, put("{user1000}.name", "Ada"), shard=4, map_version=7),
        "put_binary": request(3, put(b"k\x00\xff", bytes(range(256)))),
        "delete": request(4, delete("{user1000}.following"), client_id=99, seq=12),
        "cas": request(5, cas("counter", expected="1", value="2")),
        "cas_absent": request(6, cas("lock", value="owner", expect_absent=True)),
        "batch_get": request(7, batch_get(["a", "b", "{t}.c", ""])),
        "batch_put": request(8, batch_put([("a", "1"), ("b", "2"), ("c", "")])),
        "ping": request(9, ping("hello")),
        "node_status": request(10, node_status()),
        "no_body": request(11, b""),
        "max_id": request((1 << 64) - 1, get("k"), shard=(1 << 32) - 1),
    }


def responses():
    return {
        "resp_get": response(1, message(10, bytes_field(1, "value"))),
        "resp_not_found": response(2, code=1, msg="key not found"),
        "resp_redirect": response(3, code=5, msg="not the leader", leader="[::1]:7001",
                                  map_version=9),
        "resp_unknown_code": response(4, code=42, msg="from the future"),
        "resp_negative_code": response(5, code=-1),
        "resp_cas": response(6, message(13, uint(2, 1), bytes_field(3, "old"))),
        "resp_batch_get": response(7, message(14, message(1, uint(1, 1), bytes_field(2, "v")),
                                              message(1))),
        "resp_node_status": response(8, message(17, bytes_field(1, "n1"),
                                                bytes_field(2, "0.1.0"),
                                                bytes_field(3, "127.0.0.1:7000"),
                                                uint(4, 12345), uint(6, 64), uint(11, 1))),
    }


def seeds():
    reqs = requests_of_every_kind()
    out = {}
    for name, payload in reqs.items():
        out["req_" + name] = control() + frame(payload)
        # The same frame fed in small, uneven pieces.
        out["req_" + name + "_chunked"] = control((1, 3, 2, 7)) + frame(payload)
    for name, payload in responses().items():
        out[name] = control() + frame(payload)

    pipeline = b"".join(frame(p) for p in reqs.values())
    out["pipeline"] = control() + pipeline
    out["pipeline_byte_at_a_time"] = control((1,)) + pipeline
    out["pipeline_chunked"] = control((5, 0)) + pipeline  # 5 bytes, then all the rest

    # Framing edge cases.
    out["empty_frame"] = control() + frame(b"")
    out["empty_frames_then_get"] = control((2,)) + frame(b"") + frame(b"") + frame(reqs["get"])
    out["oversized_prefix"] = control() + b"\xff\xff\xff\xff" + b"junk"
    out["oversized_by_one"] = control() + struct.pack(">I", 8 * 1024 * 1024 + 1)
    out["get_then_oversized"] = control() + frame(reqs["get"]) + b"\x7f\xff\xff\xff"
    out["truncated_frame"] = control() + frame(reqs["put"])[:-3]
    out["truncated_header"] = control() + frame(reqs["get"]) + b"\x00\x00"
    # Limit selector 4 means a 32-byte limit: one frame at it, one just over.
    exact = request(1, ping("x" * 25))
    assert len(exact) == 32
    out["small_limit_exact"] = control(limit_selector=4) + frame(exact)
    out["small_limit_over"] = control(limit_selector=4) + frame(request(1, ping("x" * 40)))
    # Bytes that are not a valid message inside a valid frame.
    out["garbage_payload"] = control() + frame(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01")
    out["bad_utf8_message"] = control() + frame(response(1, code=2, msg=b"\xc0\x80"))
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_corpus.py OUTPUT_DIR")
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    for name, data in sorted(seeds().items()):
        # A content hash in the name keeps reruns idempotent and names unique.
        digest = hashlib.sha1(data).hexdigest()[:12]
        with open(os.path.join(out_dir, "seed-%s-%s" % (name, digest)), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
