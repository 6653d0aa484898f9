#!/usr/bin/env python3
"""Zero configuration on one machine: chats with neither --peer nor --resolver
find each other through the local resolver (PEERMESH_LOCAL_RESOLVER, a free
port per test), which the first of them hosts; when the hosting process
leaves, another running node takes it over and a newcomer still gets in."""

import os
import secrets
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

LISTEN = ["--listen", "127.0.0.1:0"]


def ever_offline(node):
    return bool(node.err.find(h.startswith("* offline")))


def resolver_host(ctx, port, nodes, when, required=True):
    """The node whose process listens on the resolver port, or None (a
    failed check if `required`, else a note)."""
    hosts, any_listener = h.who_listens(port, nodes)
    if len(hosts) == 1:
        ctx.note("%s: %s hosts the local resolver 127.0.0.1:%d" % (
            when, hosts[0].name, port))
        return hosts[0]
    report = ctx.problem if required else ctx.note
    if not any_listener:
        report("%s: nothing listens on the local resolver address "
                    "127.0.0.1:%d although every node is online through it" % (
                        when, port))
    elif not hosts:
        report("%s: 127.0.0.1:%d is listened on, but by none of the "
                    "test's nodes (%s)" % (when, port,
                                           ", ".join(n.name for n in nodes)))
    else:
        report("%s: several nodes listen on 127.0.0.1:%d: %s" % (
            when, port, ", ".join(n.name for n in hosts)))
    return None


def takeover_scenario(ctx, shared):
    port = h.free_port()
    env = {"PEERMESH_LOCAL_RESOLVER": "127.0.0.1:%d" % port}
    shared_dir = ctx.tmpdir("shared") if shared else None

    def data_dir(nick):
        return shared_dir if shared else ctx.tmpdir(nick)

    dirs = {}

    def start(nick, **kw):
        d = data_dir(nick)
        n = ctx.chat(nick, d, LISTEN, env=env, **kw)
        dirs[n] = d
        return n

    # The first node finds no resolver and hosts it; the second finds it.
    alice = start("alice")
    bob = start("bob", command_first=True)
    h.wait_online(ctx, [alice, bob])
    carol = start("carol")
    h.wait_online(ctx, [carol])
    first = [alice, bob, carol]

    tag = secrets.token_hex(3)
    said1 = {alice: "alice: first round %s" % tag,
             bob: "bob: first round %s" % tag,
             carol: "carol: first round %s" % tag}
    for n, text in said1.items():
        n.send(text)
    h.check_delivery(ctx, said1, first, also=[
        (alice, "stdout", h.joined_msg("carol")),
        (bob, "stdout", h.joined_msg("carol"))])

    # The node hosting the resolver leaves.
    host = resolver_host(ctx, port, first, "with alice, bob and carol online")
    if host is None:
        host = alice
        ctx.note("quitting alice, the first node, as the resolver host")
    elif host is not alice:
        ctx.note("the resolver host is %s, not alice, the first node" %
                 host.name)
    host.send("Q")
    ctx.require(ctx.expect_exits([host]), "the resolver host %s did not exit "
                "cleanly after Q" % host.name)
    rest = [n for n in first if n is not host]

    # A newcomer must get online and chat with those who stayed.
    dave = start("dave")
    h.wait_online(ctx, [dave])
    now = rest + [dave]
    said2 = {dave: "dave: after the takeover %s" % tag,
             rest[0]: "%s: second round %s" % (rest[0].nick, tag),
             rest[1]: "%s: second round %s" % (rest[1].nick, tag)}
    for n, text in said2.items():
        n.send(text)
    presence = [(n, "stdout", h.left_msg(host.nick)) for n in rest]
    # dave's Join: required where the node stayed online all along
    presence += [(n, "stdout", h.joined_msg("dave")) for n in rest
                 if not ever_offline(n)]
    h.check_delivery(ctx, said2, now, also=presence)
    # With separate data dirs dave can only have come in through a resolver,
    # so one must be up now; on a shared dir he may have used the known peers
    # stored there, and a takeover still in progress is only reported.
    resolver_host(ctx, port, now, "after %s left and dave came" % host.name,
                  required=not shared)

    for n in now:
        n.send("Q")
    ctx.expect_exits(now)

    h.check_not_echoed(ctx, said1, first)
    h.check_not_echoed(ctx, said2, now)
    ctx.check_stderr_clean(first + [dave])

    all_lines = [(n.nick, t) for n, t in list(said1.items()) +
                 list(said2.items())]
    if shared:
        h.check_history(ctx, shared_dir, all_lines, "shared data dir")
    else:
        for n in rest:
            h.check_history(ctx, dirs[n], all_lines, n.nick,
                            own_nicks={n.nick})
        h.check_history(ctx, dirs[host], [(n.nick, t) for n, t in
                                          said1.items()], host.nick,
                        own_nicks={host.nick})
        h.check_history(ctx, dirs[dave], [(n.nick, t) for n, t in
                                          said2.items()], "dave",
                        own_nicks={"dave"})


def test_shared_data_dir_takeover(ctx):
    """Like several terminals of one user: one (default) data directory."""
    takeover_scenario(ctx, shared=True)


def test_separate_data_dirs_takeover(ctx):
    """Like several users of one machine: a fresh newcomer has no known peers,
    so only the taken-over resolver can bring it in."""
    takeover_scenario(ctx, shared=False)


if __name__ == "__main__":
    h.main([test_shared_data_dir_takeover, test_separate_data_dirs_takeover])
