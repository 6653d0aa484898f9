#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/README.md).

Seeds are built from the byte layouts of docs/PROTOCOL.md: valid frames of
every type, the conversations a peer has with a node, and malformed frames
(4 GiB length, truncated header, wrong version, unknown type, empty bodies,
fields at and past their limits). Each seed is one file, named for what it
holds, prefixed "seed-"; files the fuzzer found are kept beside them under
other names. Running the script again rewrites the seeds byte for byte.

    python3 tests/fuzz/make_corpus.py [CORPUS_DIR]

CORPUS_DIR defaults to tests/fuzz/corpus next to this script.
"""
import hashlib
import os
import struct
import sys

VERSION = 1
T_HELLO, T_CONNECT, T_WELCOME, T_REFUSE, T_DISCONNECT, T_PING = (
    0x01, 0x10, 0x11, 0x12, 0x13, 0x14)
T_FLOOD, T_IHAVE, T_GRAFT, T_TREE, T_SYNC = 0x20, 0x21, 0x22, 0x24, 0x25
T_MEMBERS, T_MEMBERS_DIGEST = 0x26, 0x27
T_MEMBERS_SUBDIGEST, T_MEMBERS_WANT = 0x28, 0x29
T_OLD_PRUNE = 0x23  # Prune, retired with the Tree frame: now an unknown type
R_REGISTER, R_REGISTERED, R_RESOLVE, R_RESOLVED = 0x40, 0x41, 0x42, 0x43
R_UNREGISTER, R_UNREGISTERED, R_ERROR = 0x44, 0x45, 0x4f

# What fuzz_node.c uses: the node under test, its harness-driven second
# neighbour, and the message it sends with FLAG_SEND_OWN.
NODE_MESH = b"fuzz"
NODE_ID = b"\xa0" * 32
PEER_ID = b"\x50" * 32
AUTHOR_ID = b"\x70" * 32
OWN_ACTION = b"Chat"
OWN_BODY = b'{"member":"fuzz","text":"hello"}'
OWN_TIME = 1700000000000

F_OUTBOUND, F_SECOND, F_SEND_OWN, F_FILTER = 0x01, 0x02, 0x04, 0x08
F_QUEUE_LIMIT, F_FAIL_DIALS, F_LEAVE, F_ALLOC_FAIL = 0x10, 0x20, 0x40, 0x80
C_COUNTS_1_1_1, C_COUNTS_1_1_2, C_COUNTS_2_2_3 = 0x01, 0x02, 0x03
C_SMALL_CACHE, C_DRAINED, C_SECOND_OUT = 0x04, 0x08, 0x10
C_TRANSPORT_END, C_OWN_HOP_LIMIT, C_PEER_KEY = 0x20, 0x40, 0x80


def u8(v):
    return struct.pack(">B", v)


def u16(v):
    return struct.pack(">H", v)


def u32(v):
    return struct.pack(">I", v)


def u64(v):
    return struct.pack(">Q", v)


def str8(s):
    assert len(s) <= 255
    return u8(len(s)) + s


def frame(ftype, payload, version=VERSION, length=None):
    return u8(version) + u8(ftype) + u32(len(payload) if length is None
                                         else length) + payload


def node_id(n):
    return bytes([n]) * 32


# ---- link and mesh bodies (PROTOCOL.md sections 3-5) -----------------------

def hello(mesh=NODE_MESH, nid=PEER_ID, port=4001, features=0):
    return frame(T_HELLO, str8(mesh) + nid + u16(port) + u32(features))


def referrals(ftype, reason, items):
    body = u8(reason) + u8(len(items))
    for nid, addr in items:
        body += nid + str8(addr)
    return frame(ftype, body)


def flood_id(origin, seq, time_ms, action, body, hop_limit=None):
    h = hashlib.blake2b(digest_size=32)
    h.update(b"peermesh flood v2" + origin + u64(seq) + u64(time_ms) +
             u8(0 if hop_limit is None else 1) +
             u64(0 if hop_limit is None else hop_limit) +
             u64(len(action)) + action + u64(len(body)) + body)
    return h.digest()


def test_signature(author, msg_id):
    """The stand-in signer of tests/unit/test_signer.h."""
    return hashlib.blake2b(author + msg_id, key=b"pm test signer\0\0",
                           digest_size=64).digest()


def flood_payload(origin=AUTHOR_ID, seq=1, time_ms=OWN_TIME, action=b"Chat",
                  body=b'{"member":"ann","text":"hi"}', hop_limit=None,
                  hops=0, msg_id=None, flags=None, hop_field=None):
    if msg_id is None:
        msg_id = flood_id(origin, seq, time_ms, action, body, hop_limit)
    if flags is None:
        flags = 0 if hop_limit is None else 1
    if hop_field is None:
        hop_field = 0 if hop_limit is None else hop_limit
    return (msg_id + origin + u64(seq) + u64(time_ms) + u8(flags) +
            u32(hop_field) + u16(hops) + str8(action) + u32(len(body)) + body +
            test_signature(origin, msg_id))


def flood(**kw):
    return frame(T_FLOOD, flood_payload(**kw))


def ids(ftype, id_list, count=None):
    return frame(ftype, u8(len(id_list) if count is None else count) +
                 b"".join(id_list))


def tree(root=PEER_ID, epoch=1, dist=0, flags=0):
    return frame(T_TREE, root + u32(epoch) + u16(dist) + u8(flags))


def sync(window_ms=60000):
    return frame(T_SYNC, u32(window_ms))


def members(entries, count=None):
    """Members: u16 count, count x (id[32], incarnation u32, interval u32)."""
    return frame(T_MEMBERS, u16(len(entries) if count is None else count) +
                 b"".join(nid + u32(inc) + u32(iv) for nid, inc, iv in entries))


def member_tag(nid):
    return struct.unpack(">Q", nid[8:16])[0]


def members_digest(live_ids, nb=32):
    """MembersDigest of these live members: per bucket (first ID byte mod
    nb), u32 count and u64 XOR of tags (ID bytes 8..15, big-endian)."""
    count, tags = [0] * nb, [0] * nb
    for nid in live_ids:
        count[nid[0] % nb] += 1
        tags[nid[0] % nb] ^= member_tag(nid)
    return frame(T_MEMBERS_DIGEST,
                 b"".join(u32(c) + u64(t) for c, t in zip(count, tags)))


def members_subdigest(live_ids, buckets):
    """MembersSubDigest of these live members for these buckets: per
    bucket, u8 bucket and 16 u64 XORs of tags by sub-bucket (the high
    nibble of ID byte 1)."""
    out = b""
    for b in sorted(buckets):
        tags = [0] * 16
        for nid in live_ids:
            if nid[0] == b:
                tags[nid[1] >> 4] ^= member_tag(nid)
        out += bytes([b]) + b"".join(u64(t) for t in tags)
    return frame(T_MEMBERS_SUBDIGEST, out)


def members_want(subs):
    return frame(T_MEMBERS_WANT, b"".join(struct.pack(">H", x)
                                          for x in sorted(subs)))


def fake_id(n):
    return hashlib.blake2b(b"id %d" % n, digest_size=32).digest()


REFS3 = [(node_id(0x31), b"10.0.0.31:4031"), (node_id(0x32), b"[::1]:4032"),
         (node_id(0x33), b"host-33.example:4033")]
REFS10 = [(node_id(0x40 + i), b"10.0.1.%d:%d" % (i, 5000 + i))
          for i in range(9)] + [(node_id(0x4f), b"[fe80::1%eth0]:65535")]
ADDR127 = b"h" * 121 + b":65535"
assert len(ADDR127) == 127


def frame_seeds():
    s = {}
    s["hello"] = hello(b"lobby", PEER_ID, 7471)
    s["hello-mesh63"] = hello(b"a" * 63)
    s["hello-mesh255"] = hello(b"m" * 255)  # decoder takes it, encoder not
    s["hello-port0-features"] = hello(port=0, features=0xffffffff)
    s["connect"] = frame(T_CONNECT, b"")
    s["ping"] = frame(T_PING, b"")
    s["tree-root"] = tree()
    s["tree-parent-far"] = tree(node_id(0x01), 0xffffffff, 0xfffe, 1)
    s["tree-inf"] = tree(node_id(0xff), 7, 0xffff, 0)
    s["sync"] = sync()
    s["sync-max"] = sync(0xffffffff)
    s["welcome-empty"] = referrals(T_WELCOME, 0, [])
    s["welcome-3"] = referrals(T_WELCOME, 0, REFS3)
    s["welcome-10"] = referrals(T_WELCOME, 0, REFS10)
    s["refuse-busy"] = referrals(T_REFUSE, 5, REFS3[:2])
    s["disconnect-leaving"] = referrals(T_DISCONNECT, 1, [])
    s["disconnect-addr127"] = referrals(T_DISCONNECT, 2,
                                        [(node_id(0x77), ADDR127)])
    s["flood-chat"] = flood()
    s["flood-hoplimit"] = flood(hop_limit=3, hops=2)
    s["flood-hops-max"] = flood(hop_limit=0xffffffff, hops=0xffff)
    s["flood-empty-body"] = flood(body=b"")
    s["flood-action64"] = flood(action=b"A" * 64)
    s["flood-action255"] = flood(action=b"B" * 255)  # decoder only
    s["flood-body4k"] = flood(body=bytes(range(256)) * 16)
    s["ihave-1"] = ids(T_IHAVE, [fake_id(1)])
    s["ihave-64"] = ids(T_IHAVE, [fake_id(i) for i in range(64)])
    s["graft-1"] = ids(T_GRAFT, [fake_id(2)])
    s["graft-64"] = ids(T_GRAFT, [fake_id(i) for i in range(100, 164)])
    s["stream-all"] = b"".join(s[k] for k in sorted(s) if k != "flood-body4k")
    # Malformed.
    s["len-4gib"] = frame(T_FLOOD, b"", length=0xffffffff)
    s["len-max-partial"] = frame(T_FLOOD, b"\0" * 10, length=65530)
    s["len-too-large"] = frame(T_FLOOD, b"\0" * 10, length=65531)
    s["truncated-header"] = b"\x01\x01\x00"
    s["version0"] = frame(T_PING, b"", version=0)
    s["version2"] = frame(T_HELLO, hello()[6:], version=2)
    s["unknown-type"] = frame(0x7f, b"")
    s["resolver-type-on-link"] = frame(R_REGISTER, b"")
    for name, t in (("hello", T_HELLO), ("welcome", T_WELCOME),
                    ("flood", T_FLOOD), ("ihave", T_IHAVE)):
        s["empty-" + name] = frame(t, b"")
    s["hello-trailing"] = frame(T_HELLO, hello()[6:] + b"\0")
    s["hello-mesh-empty"] = frame(T_HELLO, str8(b"") + PEER_ID + u16(1) +
                                  u32(0))
    s["hello-truncated"] = frame(T_HELLO, hello()[6:-1])
    s["referrals-count11"] = referrals(T_WELCOME, 0, REFS10 + REFS3[:1])
    s["referral-addr128"] = referrals(T_WELCOME, 0,
                                      [(PEER_ID, b"h" + ADDR127)])
    s["referral-bad-addr"] = referrals(T_WELCOME, 0, [(PEER_ID, b"nope")])
    s["referral-port0"] = referrals(T_WELCOME, 0, [(PEER_ID, b"1.2.3.4:0")])
    s["referral-port65536"] = referrals(T_WELCOME, 0,
                                        [(PEER_ID, b"1.2.3.4:65536")])
    s["referral-nul"] = referrals(T_WELCOME, 0, [(PEER_ID, b"1.2.3.4\0:5")])
    s["referral-bare-v6"] = referrals(T_WELCOME, 0, [(PEER_ID, b"::1:5")])
    s["flood-bad-flags"] = frame(T_FLOOD, flood_payload(flags=2))
    s["flood-hop-without-flag"] = frame(T_FLOOD, flood_payload(hop_field=5))
    s["flood-action-empty"] = flood(action=b"")
    s["flood-body-len-4gib"] = frame(
        T_FLOOD, flood_payload(body=b"")[:-4] + u32(0xffffffff) + b"xyz")
    s["flood-truncated"] = frame(T_FLOOD, flood_payload()[:-1])
    s["ihave-count0"] = ids(T_IHAVE, [], count=0)
    s["ihave-count65"] = ids(T_IHAVE, [fake_id(i) for i in range(65)])
    s["ihave-short"] = ids(T_IHAVE, [fake_id(1)], count=2)
    s["old-prune"] = frame(T_OLD_PRUNE, b"")
    s["tree-bad-flags"] = tree(flags=2)
    s["tree-short"] = frame(T_TREE, tree()[6:-1])
    s["tree-trailing"] = frame(T_TREE, tree()[6:] + b"\0")
    s["sync-short"] = frame(T_SYNC, b"\0\0\0")
    s["sync-trailing"] = frame(T_SYNC, u32(1) + b"\0")
    s["valid-then-4gib"] = hello() + frame(T_FLOOD, b"", length=0xffffffff)
    return s


# ---- node conversations: fuzz_node.c's 5-byte header, then the stream ------

def node_input(flags, chunking, step, alloc, stream, conf=0):
    return bytes([flags, chunking, step, alloc, conf]) + stream


def node_seeds():
    own_id = flood_id(NODE_ID, 1, OWN_TIME, OWN_ACTION, OWN_BODY)
    hi = hello()
    inbound = hi + frame(T_CONNECT, b"")
    chat = flood()
    chat2 = flood(seq=2, body=b'{"member":"ann","text":"again"}', hops=1)
    session = (inbound + frame(T_PING, b"") + chat + chat +
               ids(T_IHAVE, [fake_id(1), fake_id(2)]) + chat2 +
               tree() + ids(T_GRAFT, [own_id]) +
               referrals(T_DISCONNECT, 1, REFS3))
    s = {}
    s["in-connect"] = node_input(0, 0, 0, 0, inbound)
    s["in-session"] = node_input(0, 0, 10, 0, session)
    s["in-session-bytes"] = node_input(0, 0x40, 1, 0, session)
    s["in-session-chunks"] = node_input(0, 0x05, 3, 0, session)
    s["in-second-flood"] = node_input(
        F_SECOND, 0x03, 20, 0,
        inbound + chat + flood(seq=3, hop_limit=0) +
        flood(seq=4, hop_limit=2, hops=5) + ids(T_IHAVE, [fake_id(3)]) +
        frame(T_PING, b"") * 8 + flood(seq=5, body=b"") + chat)
    # Tree adverts: the peer (lower ID) is the root and the node its child;
    # then the root goes quiet, comes back with newer epochs, or claims a
    # parent, over seconds of virtual time (step 40: 1.6 s per chunk).
    s["in-tree"] = node_input(
        F_SECOND, 0x08, 40, 0,
        inbound + tree() + chat + tree(epoch=2) + ids(T_IHAVE, [fake_id(8)]) +
        tree(epoch=2, flags=1) + frame(T_PING, b"") * 12 + tree(epoch=9) +
        tree(node_id(0x01), 1, 3) + tree(node_id(0xff), 1, 0) +
        flood(seq=30) + tree(epoch=10, dist=0xffff))
    s["in-tree-child"] = node_input(
        F_SECOND | F_SEND_OWN, 0, 12, 0,
        inbound + tree(NODE_ID, 1, 1, 1) + chat + tree(NODE_ID, 2, 1, 1) +
        ids(T_IHAVE, [fake_id(9)]) + frame(T_PING, b"") * 6)
    s["in-second-lazy"] = node_input(
        F_SECOND, 0x02, 30, 0,
        inbound + chat + chat + flood(seq=6) + ids(T_IHAVE, [fake_id(4)]) +
        frame(T_PING, b"") * 16 + ids(T_IHAVE, [fake_id(5), fake_id(6)]))
    s["in-graft-own"] = node_input(
        F_SECOND | F_SEND_OWN, 0, 5, 0,
        inbound + ids(T_GRAFT, [own_id]) + ids(T_GRAFT, [fake_id(7)]) +
        ids(T_IHAVE, [own_id]))
    s["in-filter"] = node_input(
        F_SECOND | F_FILTER | F_SEND_OWN, 0x10, 2, 0,
        inbound + b"".join(flood(seq=10 + i, action=a) for i, a in
                           enumerate([b"Chat", b"Join", b"Leave", b"@",
                                      b"A", b"B", b"C"])))
    big = bytes(range(256)) * 4
    s["in-queue-limit"] = node_input(
        F_SECOND | F_QUEUE_LIMIT, 0, 1, 0,
        inbound + b"".join(flood(seq=20 + i, body=big) for i in range(5)))
    s["in-leave"] = node_input(F_SECOND | F_LEAVE, 0, 4, 0,
                               inbound + chat)
    # Byte 3 bit 0: the harness writes the right IDs into these floods.
    zero = b"\0" * 32
    s["in-fix-ids"] = node_input(
        F_SECOND | F_FILTER, 0, 3, 1,
        inbound + b"".join(
            flood(seq=40 + i, action=a, body=body, hop_limit=hl, hops=i,
                  msg_id=zero)
            for i, (a, body, hl) in enumerate([
                (b"Chat", b'{"text":"a"}', None), (b"Join", b"", 0),
                (b"Leave", b"x" * 300, 1), (b"Z" * 64, b"\0", 7)])) +
        tree() + flood(seq=40, action=b"Chat", body=b'{"text":"a"}',
                       msg_id=zero))
    s["out-fix-ids-chunks"] = node_input(
        F_OUTBOUND | F_SECOND, 0x83, 25, 1,
        hi + referrals(T_WELCOME, 0, REFS3) + tree(epoch=3) +
        flood(seq=50, msg_id=zero, hop_limit=2) + frame(T_PING, b"") +
        flood(seq=51, msg_id=zero, body=b"") + tree(epoch=4, flags=1))
    # Catch-up: the node holds messages (its own, and floods from the second
    # neighbour's side) when the peer asks with Sync, twice, and with windows
    # of 0 and 2^32-1 ms.
    s["in-sync"] = node_input(
        F_SECOND | F_SEND_OWN, 0, 30, 1,
        inbound + flood(seq=60, msg_id=b"\0" * 32) + sync() + sync() +
        frame(T_PING, b""))
    s["in-sync-windows"] = node_input(
        F_SEND_OWN, 0x40, 2, 0, inbound + sync(0) + sync(0xffffffff))
    # Presence tables (PROTOCOL.md 5.5): Members at any time on a connected
    # link (new, known, self, clamped intervals, a newer incarnation, none);
    # the root (the peer) first loses the tree, so that the detached node
    # passes the joins on to the second neighbour. Then digests, answered
    # with the differing buckets' entries at most once per 5 s (step 80:
    # 6.4 s per chunk).
    mem3 = [(node_id(0x31), 1, 60000), (NODE_ID, 9, 60000),
            (node_id(0x32), 0, 0), (node_id(0x51), 7, 0xffffffff)]
    s["in-members"] = node_input(
        F_SECOND, 0x08, 40, 0,
        inbound + tree() + tree(epoch=2, dist=0xffff) + members(mem3) +
        chat + frame(T_PING, b"") * 4 +
        members(mem3) + members([(node_id(0x31), 2, 30000)]) + members([]) +
        frame(T_PING, b"") * 4)
    s["in-members-digest"] = node_input(
        F_SECOND, 0x3f, 80, 0,
        inbound + members_digest([]) + members_digest([PEER_ID]) +
        members(mem3) + frame(T_PING, b"") * 40 +
        members_digest([NODE_ID, node_id(0x31), node_id(0x32),
                        node_id(0x51)]) + frame(T_PING, b"") * 40 +
        members_digest([NODE_ID, PEER_ID, node_id(0x31), node_id(0x32)]))
    # A 256-bucket digest is answered by sub-bucket tags; this node's own
    # digest by the peer's sub-bucket tags, then a MembersWant (each once).
    live = [PEER_ID, node_id(0x31), node_id(0x32)]
    subs = [(nid[0] << 4) | (nid[1] >> 4) for nid in live]
    s["in-members-subdigest"] = node_input(
        F_SECOND, 0x3f, 80, 0,
        inbound + members(mem3) + members_digest(live, 256) +
        members_subdigest(live, {nid[0] for nid in live}) +
        members_want(subs) + frame(T_PING, b"") * 40 +
        members_subdigest(live, {0, 255}) + members_want([0, 4095]))
    # Configurations (byte 4).
    s["in-busy"] = node_input(F_SECOND, 0, 0, 0, inbound, C_COUNTS_1_1_1)
    s["out-busy"] = node_input(F_SECOND | F_OUTBOUND, 0, 0, 0,
                               hi + referrals(T_WELCOME, 0, []),
                               C_COUNTS_1_1_1)
    s["out-busy-welcome"] = node_input(
        F_OUTBOUND, 0x01, 0, 0, hi + referrals(T_WELCOME, 0, REFS3),
        C_COUNTS_1_1_2)
    s["in-prune"] = node_input(
        F_SECOND, 0, 40, 0,
        inbound + ids(T_IHAVE, [fake_id(200 + i) for i in range(40)]),
        C_COUNTS_1_1_2)
    s["in-prune-2-2-3"] = node_input(
        F_SECOND | F_OUTBOUND, 0x04, 40, 1,
        hi + referrals(T_WELCOME, 0, []) +
        b"".join(flood(seq=70 + i, msg_id=b"\0" * 32) for i in range(34)),
        C_COUNTS_2_2_3 | C_SECOND_OUT)
    s["in-duplicate-second"] = node_input(
        F_SECOND, 0, 0, 0, hello(nid=b"\x60" * 32) + frame(T_CONNECT, b""))
    s["out-duplicate-second"] = node_input(
        F_SECOND | F_OUTBOUND, 0, 0, 0,
        hello(nid=b"\x60" * 32) + referrals(T_WELCOME, 0, []),
        C_SECOND_OUT)
    s["in-duplicate-second-out"] = node_input(
        F_SECOND, 0, 0, 0, hello(nid=b"\x60" * 32) + frame(T_CONNECT, b""),
        C_SECOND_OUT)
    s["in-drained-queue"] = node_input(
        F_SECOND | F_QUEUE_LIMIT, 0x20, 1, 0,
        inbound + b"".join(flood(seq=20 + i, body=big) for i in range(5)),
        C_DRAINED)
    s["in-small-cache"] = node_input(
        F_SECOND | F_SEND_OWN, 0, 2, 1,
        inbound + b"".join(flood(seq=80 + i, body=big, msg_id=b"\0" * 32)
                           for i in range(3)) +
        ids(T_GRAFT, [own_id]) + sync(),
        C_SMALL_CACHE)
    s["in-transport-end"] = node_input(F_SECOND, 0, 1, 0, inbound + chat,
                                       C_TRANSPORT_END)
    s["in-own-hop-limit"] = node_input(
        F_SECOND | F_SEND_OWN, 0, 1, 0, inbound + ids(T_GRAFT, [own_id]),
        C_OWN_HOP_LIMIT)
    s["in-peer-key"] = node_input(0, 0, 1, 0, inbound + chat, C_PEER_KEY)
    s["bad-peer-key"] = node_input(
        0, 0, 0, 0, hello(nid=b"\x51" * 32) + frame(T_CONNECT, b""),
        C_PEER_KEY)
    s["in-alloc-fail"] = node_input(
        F_SECOND | F_ALLOC_FAIL | F_SEND_OWN, 0x07, 6, 8, session)
    s["in-idle"] = node_input(0, 0x40, 255, 0, inbound + frame(T_PING, b""))
    s["in-connect-timeout"] = node_input(0, 0x40, 120, 0, hi)
    s["out-welcome"] = node_input(
        F_OUTBOUND, 0, 8, 0,
        hi + referrals(T_WELCOME, 0, REFS3) + chat + frame(T_PING, b""))
    s["out-refuse"] = node_input(F_OUTBOUND | F_FAIL_DIALS, 0, 50, 0,
                                 hi + referrals(T_REFUSE, 5, REFS10))
    s["out-welcome-dials"] = node_input(
        F_OUTBOUND | F_FAIL_DIALS | F_SECOND, 0x01, 90, 0,
        hi + referrals(T_WELCOME, 0, REFS10) + chat)
    s["out-disconnect"] = node_input(
        F_OUTBOUND, 0, 0, 0,
        hi + referrals(T_WELCOME, 0, []) + referrals(T_DISCONNECT, 2, REFS3))
    # Peers that break the protocol: each must close the link, only it.
    s["bad-wrong-mesh"] = node_input(0, 0, 0, 0, hello(mesh=b"other"))
    s["bad-self"] = node_input(F_OUTBOUND, 0, 0, 0, hello(nid=NODE_ID))
    s["bad-before-hello"] = node_input(0, 0, 0, 0, frame(T_CONNECT, b""))
    s["bad-second-hello"] = node_input(0, 0, 0, 0, inbound + hi)
    s["bad-4gib"] = node_input(0, 0, 0, 0, inbound +
                               frame(T_FLOOD, b"", length=0xffffffff))
    s["bad-version"] = node_input(0, 0, 0, 0, inbound +
                                  frame(T_PING, b"", version=2))
    s["bad-unknown-type"] = node_input(0, 0, 0, 0, inbound + frame(0x7f, b""))
    s["bad-flood-id"] = node_input(
        F_SECOND, 0, 0, 0,
        inbound + frame(T_FLOOD, flood_payload(msg_id=b"\0" * 32)))
    s["bad-flood-own-origin"] = node_input(
        F_SECOND, 0, 0, 0, inbound + flood(origin=NODE_ID))
    s["bad-flood-action65"] = node_input(
        0, 0, 0, 0, inbound + flood(action=b"A" * 65))
    s["bad-flood-not-connected"] = node_input(0, 0, 0, 0, hi + chat)
    s["bad-refuse-inbound"] = node_input(
        0, 0, 0, 0, inbound + referrals(T_REFUSE, 5, []))
    s["bad-welcome-inbound"] = node_input(
        0, 0, 0, 0, inbound + referrals(T_WELCOME, 0, []))
    s["bad-connect-outbound"] = node_input(F_OUTBOUND, 0, 0, 0,
                                           hi + frame(T_CONNECT, b""))
    s["bad-ihave-count0"] = node_input(0, 0, 0, 0,
                                       inbound + ids(T_IHAVE, [], count=0))
    s["bad-old-prune"] = node_input(0, 0, 0, 0,
                                    inbound + frame(T_OLD_PRUNE, b""))
    s["bad-tree-flags"] = node_input(0, 0, 0, 0, inbound + tree(flags=0x80))
    s["bad-tree-before-connect"] = node_input(0, 0, 0, 0, hi + tree())
    s["bad-sync-before-connect"] = node_input(0, 0, 0, 0, hi + sync())
    s["bad-sync-short"] = node_input(0, 0, 0, 0,
                                     inbound + frame(T_SYNC, b"\0"))
    s["bad-ping-payload"] = node_input(0, 0, 0, 0,
                                       inbound + frame(T_PING, b"\0"))
    s["bad-resolver-frame"] = node_input(
        0, 0, 0, 0, inbound + frame(R_REGISTER, u32(1) + str8(b"fuzz")))
    s["bad-referral-addr"] = node_input(
        F_OUTBOUND, 0, 0, 0,
        hi + referrals(T_WELCOME, 0, [(PEER_ID, b"1.2.3.4:0")]))
    s["bad-truncated-header"] = node_input(0, 0x40, 0, 0,
                                           inbound + b"\x01\x20\x00")
    return s


# ---- resolver messages (PROTOCOL.md section 7) -----------------------------

def register(req, mesh, nid, addr):
    return frame(R_REGISTER, u32(req) + str8(mesh) + nid + str8(addr))


def resolve(req, mesh, mx, exclude=b"\0" * 32):
    return frame(R_RESOLVE, u32(req) + str8(mesh) + u8(mx) + exclude)


def resolved(req, entries, count=None):
    body = u32(req) + u8(len(entries) if count is None else count)
    for nid, addr in entries:
        body += nid + str8(addr)
    return frame(R_RESOLVED, body)


def unregister(req, mesh, nid):
    return frame(R_UNREGISTER, u32(req) + str8(mesh) + nid)


def error(req, code, msg):
    return frame(R_ERROR, u32(req) + u16(code) + str8(msg))


def resolver_seeds():
    s = {}
    s["register-v4"] = register(1, b"lobby", node_id(1), b"10.0.0.1:7471")
    s["register-v6"] = register(2, b"lobby", node_id(2), b"[::1]:7471")
    s["register-unspecified"] = register(3, b"lobby", node_id(3),
                                         b"0.0.0.0:7471")
    s["register-max-fields"] = register(0xffffffff, b"M" * 63, node_id(4),
                                        ADDR127)
    s["registered"] = frame(R_REGISTERED, u32(1) + u32(300))
    s["resolve-1"] = resolve(4, b"lobby", 1)
    s["resolve-32-exclude"] = resolve(5, b"lobby", 32, node_id(1))
    s["resolved-0"] = resolved(6, [])
    s["resolved-1"] = resolved(7, [(node_id(1), b"10.0.0.1:7471")])
    s["resolved-32"] = resolved(8, [(node_id(i), b"10.0.2.%d:%d" % (i, 7000 + i))
                                    for i in range(32)])
    s["unregister"] = unregister(9, b"lobby", node_id(1))
    s["unregistered"] = frame(R_UNREGISTERED, u32(9))
    s["error-empty"] = error(10, 1, b"")
    s["error-255"] = error(11, 4, b"e" * 255)
    s["error-unknown-code"] = error(12, 0xffff, b"what")
    # A client session against the registry: quotas, exclusion, expiry
    # (fuzz_resolver.c advances its clock by (req_id & 0xff) * 64 ms).
    sess = b""
    for i in range(7):
        sess += register(0x100 + i, b"chat", node_id(0x10 + i),
                         b"10.0.3.%d:4000" % i)
    sess += register(0x107, b"other", node_id(0x20), b"10.0.4.1:4000")
    sess += register(0x108, b"chat", node_id(0x10), b"10.0.3.9:4001")
    sess += resolve(0x109, b"chat", 32)
    sess += resolve(0x10a, b"chat", 2, node_id(0x10))
    sess += unregister(0x10b, b"chat", node_id(0x11))
    sess += unregister(0x10c, b"chat", node_id(0x11))
    sess += resolve(0x1ff, b"chat", 32)  # 16 s later: all expired
    sess += resolve(0x201, b"chat", 32)
    sess += register(0x202, b"chat", node_id(0x12), b"[::]:4000")
    sess += resolve(0x203, b"chat", 5, node_id(0x12))
    s["session"] = sess
    # Malformed.
    s["mesh-bad-char"] = register(20, b"lob by", node_id(1), b"1.2.3.4:5")
    s["mesh-64"] = register(21, b"m" * 64, node_id(1), b"1.2.3.4:5")
    s["mesh-empty"] = resolve(22, b"", 1)
    s["mesh-nul"] = unregister(23, b"lo\0by", node_id(1))
    s["addr-bad"] = register(24, b"lobby", node_id(1), b"nohost")
    s["addr-port0"] = register(25, b"lobby", node_id(1), b"1.2.3.4:0")
    s["addr-nul"] = register(26, b"lobby", node_id(1), b"1.2.3.4\0:5")
    s["addr-128"] = register(27, b"lobby", node_id(1), b"h" + ADDR127)
    s["resolve-max0"] = resolve(28, b"lobby", 0)
    s["resolve-max33"] = resolve(29, b"lobby", 33)
    s["resolved-count33"] = resolved(30, [(node_id(i), b"1.2.3.4:5")
                                          for i in range(33)])
    s["resolved-short"] = resolved(31, [(node_id(1), b"1.2.3.4:5")], count=2)
    s["error-nul"] = error(32, 1, b"a\0b")
    s["registered-trailing"] = frame(R_REGISTERED, u32(1) + u32(2) + b"\0")
    s["register-truncated"] = register(33, b"lobby", node_id(1),
                                       b"1.2.3.4:5")[:-3]
    s["register-empty"] = frame(R_REGISTER, b"")
    s["unregistered-short"] = frame(R_UNREGISTERED, b"\0\0\0")
    s["unknown-0x46"] = frame(0x46, u32(34))
    s["hello-type"] = hello()
    s["len-4gib"] = frame(R_RESOLVE, b"", length=0xffffffff)
    s["version2"] = frame(R_UNREGISTERED, u32(35), version=2)
    return s


def write(corpus, name, seeds):
    d = os.path.join(corpus, name)
    os.makedirs(d, exist_ok=True)
    total = 0
    for key, data in sorted(seeds.items()):
        with open(os.path.join(d, "seed-" + key), "wb") as f:
            f.write(data)
        total += len(data)
    print("%s: %d seeds, %d bytes" % (d, len(seeds), total))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    corpus = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus")
    write(corpus, "frame", frame_seeds())
    write(corpus, "node", node_seeds())
    write(corpus, "resolver", resolver_seeds())


if __name__ == "__main__":
    main()
