#!/usr/bin/env python3
"""A mesh of 20 chat processes on loopback survives losing 6 at once:
after `kill -9` of six nodes (the one hosting the local resolver among
them) the other fourteen are still one mesh and keep chatting."""

import os
import secrets
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

NODES = 20
KILLED = 6
LISTEN = ["--listen", "127.0.0.1:0"]


def round_of_chat(ctx, speakers, listeners, label):
    """Each speaker says one line; every listener must get every line of the
    others."""
    tag = secrets.token_hex(3)
    said = {n: "%s says %s %s" % (n.nick, label, tag) for n in speakers}
    for n, text in said.items():
        n.send(text)
    h.check_delivery(ctx, said, listeners)


def wait_one_mesh(ctx, nodes, attempts=20, each=2.0):
    """The mesh may take a moment to repair after a loss: the first node
    says a probe line until one reaches every other node (each probe waits
    `each` seconds). Returns True once one did."""
    speaker = nodes[0]
    for k in range(attempts):
        text = "probe %d %s" % (k, secrets.token_hex(3))
        speaker.send(text)
        deadline = h.deadline_in(each)
        if all(n.stream("stdout").wait(h.chat_line(speaker.nick, text),
                                       deadline)[0] is not None
               for n in nodes if n is not speaker):
            ctx.note("one mesh again after %d probe(s)" % (k + 1))
            return True
    ctx.problem("the %d survivors did not become one mesh again" % len(nodes))
    return False


def test_twenty_nodes_kill_six(ctx):
    port = h.free_port()
    env = {"PEERMESH_LOCAL_RESOLVER": "127.0.0.1:%d" % port}
    nodes = []
    for i in range(NODES):
        nick = "n%02d" % i
        nodes.append(ctx.chat(nick, ctx.tmpdir(nick), LISTEN, env=env))
    h.wait_online(ctx, nodes)
    round_of_chat(ctx, nodes[::4], nodes, "before")

    # Kill six at once, the resolver's host (the first node) among them.
    hosts, _ = h.who_listens(port, nodes)
    victims = list(hosts[:1])
    for n in nodes:
        if len(victims) == KILLED:
            break
        if n not in victims:
            victims.append(n)
    for n in victims:
        n.signal(signal.SIGKILL)
    for n in victims:
        n.wait_exit()
    survivors = [n for n in nodes if n not in victims]

    # Every survivor must hear every other: one mesh, still chatting.
    if wait_one_mesh(ctx, survivors):
        round_of_chat(ctx, survivors, survivors, "after")
    for n in survivors:
        n.send("Q")
    for n in survivors:
        code = n.wait_exit()
        ctx.check(code == 0, "%s: exit code %s after Q" % (n.name, code))


TESTS = [test_twenty_nodes_kill_six]

if __name__ == "__main__":
    h.main(TESTS)
