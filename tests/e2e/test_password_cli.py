#!/usr/bin/env python3
"""Mesh passwords on the command line: a password given as an option value is
refused with exit code 2 and an explanation, and never repeated back; the
options that do give a password are documented and checked.

What happens with the password once loaded (the PSK, the handshake) is tested
in tests/unit/test_password.c and by the link tests."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

SECRET = "s3cr3t-Value-42"


def check_usage_error(ctx, r, mentions=()):
    ctx.check(r.returncode == 2, "exit code %s, expected 2" % r.returncode)
    first = r.stderr_lines[0] if r.stderr_lines else ""
    ctx.check(first.startswith("peermesh: "),
              "stderr does not start with 'peermesh: ': %r" % r.stderr[:300])
    for word in mentions:
        ctx.check(word.lower() in first.lower(),
                  "the message %r does not mention %r" % (first, word))
    ctx.check(re.search(r"usage", r.stderr, re.IGNORECASE),
              "no usage on stderr: %r" % r.stderr[:500])
    ctx.check(r.stdout == "", "unexpected stdout %r" % r.stdout[:300])
    ctx.check(SECRET not in r.stdout and SECRET not in r.stderr,
              "the password value was echoed back: %r" % r.stderr[:500])


# (test name, argv): each gives a password as a command-line value.
PASSWORD_VALUES = [
    ("separate", ["--password", SECRET]),
    ("equals", ["--password=" + SECRET]),
    ("after_chat", ["chat", "--nick", "x", "--password", SECRET]),
    ("after_other_options", ["--mesh", "team", "--password=" + SECRET,
                             "--nick", "x"]),
    ("run", ["run", "--password", SECRET, "bot.lua"]),
    ("passwd", ["--passwd=" + SECRET]),
    ("resolver", ["resolver", "--password", SECRET]),
]


def make_password_value_test(label, args):
    def t(ctx):
        # stdin is empty: a program that wrongly started a chat would leave
        # at end of input instead of hanging.
        r = ctx.run(args)
        check_usage_error(ctx, r, ["not accepted", "--password-file",
                                   "PEERMESH_PASSWORD", "--ask-password"])
    t.__name__ = "test_password_value_" + label
    return t


PASSWORD_VALUE_TESTS = [make_password_value_test(*c) for c in PASSWORD_VALUES]


def test_misspelt_option_value_not_echoed(ctx):
    # An unknown option is named without its value, which may be a password
    # given under a misspelt name.
    r = ctx.run(["--pasword=" + SECRET])
    check_usage_error(ctx, r, ["--pasword"])


def test_password_file_needs_a_file(ctx):
    check_usage_error(ctx, ctx.run(["--password-file"]), ["--password-file"])
    check_usage_error(ctx, ctx.run(["--password-file="]), ["--password-file"])


def test_password_file_and_ask_password_conflict(ctx):
    r = ctx.run(["--password-file", "/nonexistent/pw", "--ask-password"])
    check_usage_error(ctx, r, ["--password-file", "--ask-password"])


def test_ask_password_is_for_the_chat(ctx):
    r = ctx.run(["run", "--ask-password", "bot.lua"])
    check_usage_error(ctx, r, ["--ask-password", "--password-file"])
    r = ctx.run(["--ask-password=" + SECRET])
    check_usage_error(ctx, r, ["--ask-password"])
    r = ctx.run(["resolver", "--password-file", "/x"])
    check_usage_error(ctx, r, ["--password-file"])


def test_help_documents_password_sources(ctx):
    r = ctx.run(["--help"])
    ctx.check(r.returncode == 0, "--help: exit code %s" % r.returncode)
    for word in ("--password-file", "--ask-password", "PEERMESH_PASSWORD"):
        ctx.check(word in r.stdout, "--help does not mention %r" % word)
    ctx.check(not re.search(r"--password[ =]", r.stdout),
              "--help offers a --password option: %r" % r.stdout)


TESTS = PASSWORD_VALUE_TESTS + [
    test_misspelt_option_value_not_echoed, test_password_file_needs_a_file,
    test_password_file_and_ask_password_conflict,
    test_ask_password_is_for_the_chat, test_help_documents_password_sources]

if __name__ == "__main__":
    h.main(TESTS)
