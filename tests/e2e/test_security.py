#!/usr/bin/env python3
"""Encrypted, authenticated links between real processes on loopback.

- Nodes sharing a mesh password chat; a node with a wrong password is
  refused by every member, both sides say why, and it sees nothing.
- An open node and a password node, or nodes of two meshes, do not link.
- A byte flipped in a transport record closes that link only; the nodes
  live on and link again.
- A record header announcing 4 GiB, or a peer speaking version 2, closes
  the link at once without growing the process.
- Lua: join{password_file=...} and the "link_error" event.

Nothing here sleeps to wait: every wait is for a line, an EOF or a socket
event, with a deadline."""

import os
import re
import secrets
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

NO_RESOLVER = ["--resolver", "none"]
PASSWORD = "correct horse battery staple"
WRONG = "Tr0ub4dor&3"
RSS_GROWTH_LIMIT_KB = 100 * 1024


def addr(port):
    return "127.0.0.1:%d" % port


def password_file(ctx, text, label="pw"):
    d = ctx.tmpdir(label)
    path = os.path.join(d, "password")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    return path


def refused_re(direction, port, why):
    """A stderr line: "peermesh: link to|from 127.0.0.1:PORT refused: WHY".
    `port` None: any port (the other end of an inbound link)."""
    p = r"\d+" if port is None else str(port)
    return re.compile(r"^peermesh: link %s 127\.0\.0\.1:%s refused: %s$" % (
        direction, p, why))


def wrong_password(mesh="lobby"):
    return re.escape("wrong password for mesh '%s' (the mesh name matched)" %
                     mesh)


def wait_count(ctx, proc, which, match, count, timeout=None, why=""):
    """Waits until `count` lines of `which` match (the harness waits for the
    first only)."""
    stream = proc.stream(which)
    m = h.matcher(match)
    deadline = h.deadline_in(timeout)
    with stream.cond:
        while True:
            if sum(1 for l in stream.lines if m(l)) >= count:
                return
            remaining = deadline - time.monotonic()
            if stream.eof or remaining <= 0:
                raise h.TestFailure("%s: fewer than %d lines %s on %s (%s)%s" % (
                    proc.name, count, h.describe(match), which,
                    "its %s closed; %s" % (which, proc.status())
                    if stream.eof else "deadline passed", why and
                    " (%s)" % why))
            stream.cond.wait(remaining)


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise h.TestFailure("no VmRSS for pid %d" % pid)


def check_alive(ctx, procs, when):
    for p in procs:
        ctx.check(p.running(), "%s: %s %s, expected it to keep running" % (
            p.name, p.status(), when))


def check_secret_not_leaked(ctx, procs, dirs, secrets_):
    """No password on any output stream nor in any file of the data dirs."""
    for p in procs:
        for line in p.stdout_lines() + p.stderr_lines():
            for s in secrets_:
                ctx.check(s not in line, "%s printed the password: %r" % (
                    p.name, line))
    for d in dirs:
        for root, _, files in os.walk(d):
            for name in files:
                path = os.path.join(root, name)
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError:
                    continue
                for s in secrets_:
                    ctx.check(s.encode() not in data,
                              "the password is stored in %s" % path)


def quit_all(ctx, procs):
    for p in procs:
        if p.running():
            p.send("Q")
    ctx.expect_exits(procs)


# --------------------------------------------------------------------------
# a. password meshes


def test_password_mesh_refuses_wrong_password(ctx):
    pa, pb = h.free_ports(2)
    good = password_file(ctx, PASSWORD, "good")
    bad = password_file(ctx, WRONG, "bad")
    da, db, dc, dm = (ctx.tmpdir(n) for n in ("alice", "bob", "carol",
                                              "mallory"))
    alice = ctx.chat("alice", da, NO_RESOLVER + [
        "--listen", addr(pa), "--password-file", good])
    bob = ctx.chat("bob", db, NO_RESOLVER + [
        "--peer", addr(pa), "--listen", addr(pb), "--password-file", good])
    h.wait_online(ctx, [alice, bob])
    # The same password from the environment works too.
    carol = ctx.chat("carol", dc, NO_RESOLVER + [
        "--peer", addr(pb), "--listen", "127.0.0.1:0"],
        env={"PEERMESH_PASSWORD": PASSWORD})
    h.wait_online(ctx, [carol])

    mallory = ctx.chat("mallory", dm, NO_RESOLVER + [
        "--peer", addr(pa), "--peer", addr(pb), "--listen", "127.0.0.1:0",
        "--password-file", bad])
    # Both sides of both links say what went wrong.
    ctx.expect_lines([
        (mallory, "stderr", refused_re("to", pa, wrong_password())),
        (mallory, "stderr", refused_re("to", pb, wrong_password())),
        (alice, "stderr", refused_re("from", None, wrong_password())),
        (bob, "stderr", refused_re("from", None, wrong_password())),
    ], soft=False, why="the wrong password refused on both sides")

    tag = secrets.token_hex(3)
    said = {alice: "for members only %s" % tag,
            bob: "bob agrees %s" % tag,
            carol: "carol too %s" % tag}
    for n, text in said.items():
        n.send(text)
    h.check_delivery(ctx, said, [alice, bob, carol])
    mallory.send("let me in %s" % tag)

    quit_all(ctx, [alice, bob, carol, mallory])
    for text in said.values():
        ctx.check(not any(text in l for l in mallory.stdout_lines()),
                  "mallory saw %r" % text)
    ctx.check(not mallory.err.find(h.online_line("mallory")),
              "mallory went online: %r" % mallory.err.find(
                  h.online_line("mallory")))
    for p in (alice, bob, carol):
        ctx.check(not any(("let me in %s" % tag) in l
                          for l in p.stdout_lines()),
                  "%s got mallory's line" % p.name)
    ctx.check_stderr_clean([alice, bob, carol, mallory])
    check_secret_not_leaked(ctx, [alice, bob, carol, mallory],
                            [da, db, dc, dm], [PASSWORD, WRONG])


def test_open_node_and_password_mesh(ctx):
    (pa,) = h.free_ports(1)
    good = password_file(ctx, PASSWORD)
    alice = ctx.chat("alice", ctx.tmpdir("alice"), NO_RESOLVER + [
        "--listen", addr(pa), "--password-file", good])
    opener = ctx.chat("open", ctx.tmpdir("open"), NO_RESOLVER + [
        "--peer", addr(pa), "--listen", "127.0.0.1:0"])
    ctx.expect_lines([
        (opener, "stderr", refused_re("to", pa, re.escape(
            "the peer has a password for mesh 'lobby' and this node has "
            "none (the mesh name matched)"))),
        (alice, "stderr", refused_re("from", None, re.escape(
            "the peer has no password for mesh 'lobby' and this node has "
            "one (the mesh name matched)"))),
    ], soft=False, why="an open node and a password node do not link")
    quit_all(ctx, [alice, opener])
    ctx.check(not opener.err.find(h.online_line("open")), "the open node "
              "went online")
    ctx.check_stderr_clean([alice, opener])


def test_other_mesh_is_refused(ctx):
    (pa,) = h.free_ports(1)
    alice = ctx.chat("alice", ctx.tmpdir("alice"), NO_RESOLVER + [
        "--listen", addr(pa)])
    other = ctx.spawn("other", ["--nick", "other", "--mesh", "elsewhere",
                                "--data-dir", ctx.tmpdir("other"),
                                "--peer", addr(pa), "--listen",
                                "127.0.0.1:0"] + NO_RESOLVER)
    other.nick = "other"
    ctx.expect_lines([
        (other, "stderr", refused_re("to", pa, re.escape(
            "the peer belongs to another mesh, not 'elsewhere'"))),
        (alice, "stderr", refused_re("from", None, re.escape(
            "the peer belongs to another mesh, not 'lobby'"))),
    ], soft=False, why="nodes of two meshes do not link")
    quit_all(ctx, [alice, other])
    ctx.check_stderr_clean([alice, other])


def test_password_source_errors(ctx):
    """A password that cannot be used stops the chat before it joins, with
    a sentence that never contains the password."""
    d = ctx.tmpdir("pw")
    loose = os.path.join(d, "loose")
    with open(loose, "w") as f:
        f.write(PASSWORD + "\n")
    os.chmod(loose, 0o644)
    cases = [
        ("readable by others", ["--password-file", loose], None,
         re.compile(r"^peermesh: .*%s.*not joining 'lobby'$" % re.escape(
             loose))),
        ("missing file", ["--password-file", os.path.join(d, "nope")], None,
         re.compile(r"^peermesh: cannot open password file .*nope.*; not "
                    r"joining 'lobby'$")),
        ("empty PEERMESH_PASSWORD", [], {"PEERMESH_PASSWORD": ""},
         re.compile(r"^peermesh: .*PEERMESH_PASSWORD.*not joining 'lobby'$")),
    ]
    for label, args, env, want in cases:
        r = ctx.run(["--nick", "x", "--data-dir", ctx.tmpdir("data"),
                     "--resolver", "none"] + args, env=env,
                    name="chat with a %s" % label)
        ctx.check(r.returncode == 1, "%s: exit code %s, expected 1" % (
            label, r.returncode))
        ctx.check(any(want.search(l) for l in r.stderr_lines),
                  "%s: no line %s on stderr: %r" % (label, want.pattern,
                                                    r.stderr))
        ctx.check(PASSWORD not in r.stdout + r.stderr,
                  "%s: the password was printed" % label)
        ctx.check("joined mesh" not in r.stderr, "%s: joined anyway: %r" % (
            label, r.stderr))


# --------------------------------------------------------------------------
# b. tampering


class TamperProxy:
    """Forwards TCP between a client and `target`. While armed, it flips one
    bit in the payload of the next transport record (type 0x03) going from
    the client to the target, then disarms itself."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.armed = False
        self.tampered = threading.Event()
        self.transport_seen = 0
        self.socks = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self):
        with self.lock:
            self.armed = True

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.target, timeout=10)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            with self.lock:
                if self.closed:
                    c.close()
                    u.close()
                    return
                self.socks += [c, u]
            threading.Thread(target=self._pipe, args=(c, u, True),
                             daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c, False),
                             daemon=True).start()

    def _on_transport(self):
        """A transport record starts; whether to flip a bit of it."""
        with self.lock:
            self.transport_seen += 1
            flip, self.armed = self.armed, False
            return flip

    def _pipe(self, src, dst, scan):
        scanner = RecordScanner(self) if scan else None
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if scanner:
                    data = scanner.feed(data)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        with self.lock:
            self.closed = True
            socks = list(self.socks)
        try:
            self.lsock.close()
        except OSError:
            pass
        for s in socks:
            try:
                s.close()
            except OSError:
                pass


class RecordScanner:
    """Follows the records of one direction across reads (6-byte headers:
    version, type, u32 length) and flips a bit of the first payload byte of
    a transport record when the proxy says so."""

    def __init__(self, proxy):
        self.proxy = proxy
        self.hdr = b""
        self.left = 0  # payload bytes of the current record still to come
        self.flip = False

    def feed(self, data):
        out = bytearray(data)
        i = 0
        while i < len(out):
            if len(self.hdr) < 6:
                take = min(6 - len(self.hdr), len(out) - i)
                self.hdr += bytes(out[i:i + take])
                i += take
                if len(self.hdr) == 6:
                    self.left = int.from_bytes(self.hdr[2:6], "big")
                    if self.hdr[1] == 0x03 and self.left > 0:
                        self.flip = self.proxy._on_transport()
                    if self.left == 0:
                        self.hdr = b""
                continue
            if self.flip:
                out[i] ^= 0x01
                self.flip = False
                self.proxy.tampered.set()
            take = min(self.left, len(out) - i)
            i += take
            self.left -= take
            if self.left == 0:
                self.hdr = b""
        return bytes(out)


def test_tampered_record_closes_the_link_only(ctx):
    (pa,) = h.free_ports(1)
    alice = ctx.chat("alice", ctx.tmpdir("alice"), NO_RESOLVER + [
        "--listen", addr(pa)])
    proxy = TamperProxy(pa)
    try:
        bob = ctx.chat("bob", ctx.tmpdir("bob"), NO_RESOLVER + [
            "--peer", addr(proxy.port), "--listen", "127.0.0.1:0"])
        h.wait_online(ctx, [alice, bob])
        first = "before tampering %s" % secrets.token_hex(3)
        bob.send(first)
        alice.wait_out(h.chat_line("bob", first))

        # The next transport record from bob to alice gets one bit flipped.
        proxy.arm()
        bob.send("this record is tampered with %s" % secrets.token_hex(3))
        if not proxy.tampered.wait(max(0.1, h.deadline_in() -
                                       time.monotonic())):
            raise h.TestFailure("the proxy saw no transport record to tamper "
                                "with (%d seen)" % proxy.transport_seen)
        alice.wait_err(re.compile(
            r"^peermesh: link from 127\.0\.0\.1:\d+ closed: tampered or "
            r"corrupt data \(authentication failed\)$"),
            why="alice notices the tampered record")
        # Both lose the link and stay up; bob dials again (its --peer is
        # pinned) and the link comes back through the now honest proxy.
        wait_count(ctx, bob, "stderr", h.online_line("bob"), 2,
                   why="bob links again after the tampered link closed")
        wait_count(ctx, alice, "stderr", h.online_line("alice"), 2,
                   why="alice links again")
        check_alive(ctx, [alice, bob], "after the tampered link")
        after = "after tampering %s" % secrets.token_hex(3)
        back = "alice answers %s" % secrets.token_hex(3)
        bob.send(after)
        alice.send(back)
        ctx.expect_lines([(alice, "stdout", h.chat_line("bob", after)),
                          (bob, "stdout", h.chat_line("alice", back))],
                         why="chat works again on the new link")
        quit_all(ctx, [alice, bob])
        ctx.check_stderr_clean([alice, bob])
    finally:
        proxy.close()


# --------------------------------------------------------------------------
# c, d. hostile raw clients


def raw_exchange(port, payload, timeout):
    """Connects, sends `payload`, and reads until the node closes. Returns
    (bytes received, True if it closed)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    got = b""
    try:
        s.sendall(payload)
        while True:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                return got, True
            except socket.timeout:
                return got, False
            if not data:
                return got, True
            got += data
    finally:
        s.close()


def test_huge_record_header_closes_the_link(ctx):
    (pa,) = h.free_ports(1)
    alice = ctx.chat("alice", ctx.tmpdir("alice"), NO_RESOLVER + [
        "--listen", addr(pa)])
    before = rss_kb(alice.pid)
    limit = max(1.0, h.deadline_in() - time.monotonic())
    for n, header in enumerate((b"\x01\x03\xff\xff\xff\xff",
                                b"\x01\x02\xff\xff\xff\xff"), 1):
        # the header, then a little payload as if more were coming
        got, closed = raw_exchange(pa, header + b"\x00" * 1024, limit)
        ctx.check(closed, "the link announcing 4 GiB (%s) was not closed" %
                  header.hex())
        ctx.check(got == b"", "the node answered %r to %s" % (got,
                                                               header.hex()))
        wait_count(ctx, alice, "stderr", refused_re("from", None, re.escape(
            "the peer announced a record larger than the 65535-byte limit")),
            n, why="alice reports the oversized record")
    check_alive(ctx, [alice], "after 4 GiB record headers")
    after = rss_kb(alice.pid)
    ctx.check(after - before < RSS_GROWTH_LIMIT_KB,
              "alice's RSS grew from %d kB to %d kB" % (before, after))
    # Still serving: a real node links.
    bob = ctx.chat("bob", ctx.tmpdir("bob"), NO_RESOLVER + [
        "--peer", addr(pa), "--listen", "127.0.0.1:0"])
    h.wait_online(ctx, [alice, bob])
    quit_all(ctx, [alice, bob])
    ctx.check_stderr_clean([alice, bob])


def test_version_2_peer_is_refused(ctx):
    (pa,) = h.free_ports(1)
    alice = ctx.chat("alice", ctx.tmpdir("alice"), NO_RESOLVER + [
        "--listen", addr(pa)])
    limit = max(1.0, h.deadline_in() - time.monotonic())
    # A version 2 record header and some of its payload.
    got, closed = raw_exchange(pa, b"\x02\x02\x00\x00\x00\x20" + b"\x00" * 32,
                               limit)
    ctx.check(closed, "the version 2 link was not closed")
    # Reject(3): version 1, type 0x04, length 1, reason 3 (version)
    ctx.check(got == b"\x01\x04\x00\x00\x00\x01\x03",
              "expected a Reject(version) record, got %r" % got)
    alice.wait_err(refused_re("from", None, re.escape(
        "peer speaks protocol version 2 (this node speaks 1)")))

    # The other way round: alice dials a listener that answers version 2.
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]

    def serve():
        try:
            c, _ = srv.accept()
        except OSError:
            return
        try:
            c.settimeout(10)
            c.recv(4096)  # msg1
            c.sendall(b"\x02\x02\x00\x00\x00\x00")
            c.recv(4096)  # until alice closes
        except OSError:
            pass
        finally:
            c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        bob = ctx.chat("bob", ctx.tmpdir("bob"), NO_RESOLVER + [
            "--peer", addr(port), "--listen", "127.0.0.1:0"])
        bob.wait_err(refused_re("to", port, re.escape(
            "peer speaks protocol version 2 (this node speaks 1)")))
        check_alive(ctx, [alice, bob], "after meeting a version 2 peer")
        quit_all(ctx, [alice, bob])
    finally:
        srv.close()
    ctx.check_stderr_clean([alice, bob])


# --------------------------------------------------------------------------
# Lua


LUA_SCRIPT = r'''
local pm = require "peermesh"
local port, pwfile = arg[1], arg[2]
local node, err, code = pm.join("vault", { password_file = "/nonexistent/pw" })
assert(node == nil and code == "NOT_FOUND" and err:find("/nonexistent/pw"), err)
node = assert(pm.join("vault", { listen = "127.0.0.1:" .. port,
                                 password_file = pwfile }))
local saw_error, saw_online = false, false
local function done()
  if saw_error and saw_online then node:leave() end
end
node:on("link_error", function(e)
  if saw_error then return end
  saw_error = true
  print(("link_error %s %s"):format(e.error, e.message))
  io.stdout:flush()
  done()
end)
node:on("online", function()
  saw_online = true
  print("online")
  io.stdout:flush()
  done()
end)
print("ready")
io.stdout:flush()
'''


def test_lua_password_file_and_link_error(ctx):
    (port,) = h.free_ports(1)
    good = password_file(ctx, PASSWORD, "good")
    bad = password_file(ctx, WRONG, "bad")
    sdir = ctx.tmpdir("script")
    script = os.path.join(sdir, "vault.lua")
    with open(script, "w") as f:
        f.write(LUA_SCRIPT)
    bot = ctx.spawn("bot", ["run", "--resolver", "none", "--data-dir",
                            ctx.tmpdir("bot"), script, str(port), good])
    bot.wait_out("ready")
    mallory = ctx.chat("mallory", ctx.tmpdir("mallory"), NO_RESOLVER + [
        "--mesh", "vault", "--peer", addr(port), "--listen", "127.0.0.1:0",
        "--password-file", bad], wait_joined=False)
    bot.wait_out(re.compile(
        r"^link_error WRONG_PASSWORD link from 127\.0\.0\.1:\d+ refused: "
        r"wrong password for mesh 'vault' \(the mesh name matched\)$"))
    alice = ctx.chat("alice", ctx.tmpdir("alice"), NO_RESOLVER + [
        "--mesh", "vault", "--peer", addr(port), "--listen", "127.0.0.1:0",
        "--password-file", good], wait_joined=False)
    bot.wait_out("online")
    rc = bot.wait_exit()
    ctx.check(rc == 0, "the bot: %s, expected exit code 0" % bot.status())
    quit_all(ctx, [alice, mallory])
    ctx.check_stderr_clean([bot, alice, mallory])


# --------------------------------------------------------------------------
# e. signed messages


def test_replayed_altered_and_forged_messages_not_shown(ctx):
    """A member replays bob's message to alice, alters it, and writes under
    bob's node ID with its own key: alice shows none of it, yet shows the
    member's own honest message, which took the same link."""
    hostile = h.env_path("PEERMESH_HOSTILE")
    pa, pb = h.free_ports(2)
    da, db = ctx.tmpdir("alice"), ctx.tmpdir("bob")
    alice = ctx.chat("alice", da, NO_RESOLVER + ["--listen", addr(pa)])
    bob = ctx.chat("bob", db, NO_RESOLVER + [
        "--peer", addr(pa), "--listen", addr(pb)])
    h.wait_online(ctx, [alice, bob])
    mallory = ctx.spawn("mallory", ["lobby", addr(pa), addr(pb)],
                        bin=hostile)
    mallory.wait_out("ready")

    line = "bob-says %s" % secrets.token_hex(3)
    bob.send(line)
    alice.wait_out("<bob> %s" % line)
    mallory.wait_out("sent")
    alice.wait_out("<mallory> legit-from-mallory")

    quit_all(ctx, [alice, bob])
    mallory.close_stdin()
    ctx.expect_exits([mallory])
    shown = alice.stdout_lines()
    ctx.check(sum(1 for l in shown if line in l) == 1,
              "alice showed bob's line %d times" %
              sum(1 for l in shown if line in l))
    for bad in ("altered", "forged-by-mallory"):
        ctx.check(not any(bad in l for l in shown),
                  "alice showed the %s message" % bad)


if __name__ == "__main__":
    h.main([test_password_mesh_refuses_wrong_password,
            test_open_node_and_password_mesh, test_other_mesh_is_refused,
            test_password_source_errors,
            test_tampered_record_closes_the_link_only,
            test_huge_record_header_closes_the_link,
            test_version_2_peer_is_refused,
            test_lua_password_file_and_link_error,
            test_replayed_altered_and_forged_messages_not_shown])
