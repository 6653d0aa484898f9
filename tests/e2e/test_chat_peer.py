#!/usr/bin/env python3
"""Chats joined by --peer on loopback (no resolver): delivery, presence,
leaving (Q, q, /quit, end of input, SIGTERM, SIGINT), history."""

import os
import secrets
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

NO_RESOLVER = ["--resolver", "none"]


def addr(port):
    return "127.0.0.1:%d" % port


def test_three_peers_chat(ctx):
    pa, pb = h.free_ports(2)
    da, db, dc = (ctx.tmpdir(n) for n in ("alice", "bob", "carol"))
    alice = ctx.chat("alice", da, NO_RESOLVER + ["--listen", addr(pa)])
    bob = ctx.chat("bob", db, ["--peer", addr(pa), "--listen", addr(pb)] +
                   NO_RESOLVER, command_first=True)
    h.wait_online(ctx, [alice, bob])
    carol = ctx.chat("carol", dc, ["--peer", addr(pa), "--peer", addr(pb),
                                   "--listen", "127.0.0.1:0"] + NO_RESOLVER)
    nodes = [alice, bob, carol]
    h.wait_online(ctx, [carol])

    tag = secrets.token_hex(3)
    said = {alice: "hello from alice %s" % tag,
            bob: "bob here, all good? %s" % tag,
            carol: "ça va, ünïcode ok %s" % tag}
    for n, text in said.items():
        n.send(text)
    # Every line reaches the two others; carol's Join reaches the members
    # that were online before her (one shared deadline).
    h.check_delivery(ctx, said, nodes, also=[
        (alice, "stdout", h.joined_msg("carol")),
        (bob, "stdout", h.joined_msg("carol"))])

    # Alice and bob went online together; whether each saw the other's Join is
    # reported, not required.
    for who, other in ((alice, bob), (bob, alice)):
        if not who.out.find(h.joined_msg(other.nick)):
            ctx.note("%s did not print %r (they went online together)" % (
                who.nick, h.joined_msg(other.nick)))

    # Leave one by one; those still there see it.
    carol.send("Q")
    ctx.expect_exits([carol])
    ctx.expect_lines([(alice, "stdout", h.left_msg("carol")),
                      (bob, "stdout", h.left_msg("carol"))],
                     why="carol's Leave")
    bob.send("Q")
    ctx.expect_exits([bob])
    ctx.expect_lines([(alice, "stdout", h.left_msg("bob"))], why="bob's Leave")
    alice.send("Q")
    ctx.expect_exits([alice])

    h.check_not_echoed(ctx, said, nodes)
    ctx.check_stderr_clean(nodes)

    lines = [(n.nick, t) for n, t in said.items()]
    for n, d in ((alice, da), (bob, db), (carol, dc)):
        h.check_history(ctx, d, lines, n.nick, own_nicks={n.nick})

    # --limit and --mesh filters on one of them
    r = h.history(ctx, da, ["--limit", "1"])
    ctx.check(r.returncode == 0 and len(r.stdout_lines) == 1,
              "history --limit 1: exit %s, %d lines, expected exit 0 and one "
              "line" % (r.returncode, len(r.stdout_lines)))
    r = h.history(ctx, da, ["--mesh", "another-mesh"])
    ctx.check(r.returncode == 0 and not any(tag in l for l in r.stdout_lines),
              "history --mesh another-mesh: exit %s, shows lobby lines: %r" % (
                  r.returncode, r.stdout_lines))


def hub_and_spokes(ctx, spoke_nicks):
    """A hub node with a fixed port and spokes that --peer it; all online."""
    (ph,) = h.free_ports(1)
    hub = ctx.chat("hub", ctx.tmpdir("hub"), NO_RESOLVER + ["--listen", addr(ph)])
    spokes = [ctx.chat(n, ctx.tmpdir(n), ["--peer", addr(ph), "--listen",
                                          "127.0.0.1:0"] + NO_RESOLVER,
                       name="%s%d" % (n, i + 1) if spoke_nicks.count(n) > 1
                       else n)
              for i, n in enumerate(spoke_nicks)]
    h.wait_online(ctx, [hub] + spokes)
    return hub, spokes


def test_quit_commands_and_end_of_input(ctx):
    hub, (s1, s2, s3) = hub_and_spokes(ctx, ["slash", "lower", "eof"])
    s1.send("/quit")
    s2.send("q")
    s3.close_stdin()
    ctx.expect_exits([s1, s2, s3])
    ctx.expect_lines([(hub, "stdout", h.left_msg(n)) for n in
                      ("slash", "lower", "eof")], why="Leave of each spoke")
    hub.wait_err(h.startswith("* offline"), soft=True,
                 why="the hub lost its last neighbour")
    hub.send("Q")
    ctx.expect_exits([hub])
    ctx.check_stderr_clean([hub, s1, s2, s3])


def test_signals_leave_cleanly(ctx):
    hub, (s1, s2) = hub_and_spokes(ctx, ["term", "int"])
    s1.signal(signal.SIGTERM)
    s2.signal(signal.SIGINT)
    ctx.expect_exits([s1, s2])
    ctx.expect_lines([(hub, "stdout", h.left_msg("term")),
                      (hub, "stdout", h.left_msg("int"))],
                     why="Leave of a node stopped by a signal")
    hub.signal(signal.SIGTERM)
    ctx.expect_exits([hub])
    ctx.check_stderr_clean([hub, s1, s2])


def test_same_nick_is_hidden(ctx):
    hub, (twin1, twin2) = hub_and_spokes(ctx, ["twin", "twin"])
    text = "from the first twin %s" % secrets.token_hex(3)
    twin1.send(text)
    ctx.expect_lines([(hub, "stdout", h.chat_line("twin", text))])
    # the hub got it, so it was flooded; now finish and look at twin2
    for n in (twin1, twin2, hub):
        n.send("Q")
    ctx.expect_exits([twin1, twin2, hub])
    ctx.check(not any(text in l for l in twin2.stdout_lines()),
              "twin2 printed a line of a member with its own nickname: %r" %
              [l for l in twin2.stdout_lines() if text in l])
    ctx.check(not any(text in l for l in twin1.stdout_lines()),
              "twin1 printed its own line")


if __name__ == "__main__":
    h.main([test_three_peers_chat, test_quit_commands_and_end_of_input,
            test_signals_leave_cleanly, test_same_nick_is_hidden])
