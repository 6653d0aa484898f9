#!/usr/bin/env python3
"""`cmake --install` into a temporary prefix gives a peermesh that runs from
anywhere: it finds its installed scripts whatever the current directory."""

import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

# One installation shared by the tests of this script.
STATE = {"prefix": None, "error": None, "log": ""}


def install_once():
    if STATE["prefix"] or STATE["error"]:
        return
    build = h.env_path("PEERMESH_BUILD")
    cmake = shutil.which("cmake")
    if not cmake:
        STATE["error"] = "cmake is not on PATH"
        return
    prefix = tempfile.mkdtemp(prefix="pm-e2e-install-")
    STATE["prefix"] = prefix
    argv = [cmake, "--install", build, "--prefix", prefix]
    try:
        env = dict(os.environ)
        env.pop("DESTDIR", None)  # install exactly under the prefix
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env=env, timeout=120)
        STATE["log"] = "$ %s\n%s" % (" ".join(argv),
                                     r.stdout.decode("utf-8", "replace"))
        if r.returncode != 0:
            STATE["error"] = "`%s` exited with code %d:\n%s" % (
                " ".join(argv), r.returncode, STATE["log"])
    except subprocess.TimeoutExpired:
        STATE["error"] = "`%s` did not finish within 120 s" % " ".join(argv)


def installed(ctx):
    install_once()
    ctx.require(STATE["error"] is None, "installation failed: %s" %
                STATE["error"])
    return STATE["prefix"]


def installed_bin(ctx):
    return os.path.join(installed(ctx), "bin", "peermesh")


def test_cmake_install_layout(ctx):
    prefix = installed(ctx)
    exe = os.path.join(prefix, "bin", "peermesh")
    if ctx.check(os.path.isfile(exe), "%s is missing; install log:\n%s" % (
            exe, STATE["log"])):
        ctx.check(os.stat(exe).st_mode & stat.S_IXUSR,
                  "%s is not executable" % exe)
    scripts = os.path.join(prefix, "share", "peermesh", "scripts")
    for rel in ("chat.lua", os.path.join("lib", "lines.lua")):
        p = os.path.join(scripts, rel)
        ctx.check(os.path.isfile(p), "%s is missing; install log:\n%s" % (
            p, STATE["log"]))


def test_installed_version(ctx):
    exe = installed_bin(ctx)
    r = ctx.run(["--version"], bin=exe, cwd="/", name="installed --version")
    ctx.check(r.returncode == 0, "exit code %s, expected 0" % r.returncode)
    ctx.check(re.fullmatch(r"peermesh \d+\.\d+\.\d+\n", r.stdout),
              "expected 'peermesh X.Y.Z', got %r" % r.stdout)
    built = ctx.run(["--version"], name="build tree --version")
    ctx.check(r.stdout == built.stdout, "installed %r but build tree %r" % (
        r.stdout, built.stdout))


def test_installed_chat_from_another_directory(ctx):
    exe = installed_bin(ctx)
    elsewhere = ctx.tmpdir("cwd")
    (pa,) = h.free_ports(1)
    common = ["--resolver", "none"]
    a = ctx.chat("ann", ctx.tmpdir("ann"), common + ["--listen",
                                                     "127.0.0.1:%d" % pa],
                 bin=exe, cwd="/")
    b = ctx.chat("ben", ctx.tmpdir("ben"), common + [
        "--peer", "127.0.0.1:%d" % pa, "--listen", "127.0.0.1:0"],
        bin=exe, cwd=elsewhere, command_first=True)
    h.wait_online(ctx, [a, b])
    tag = secrets.token_hex(3)
    said = {a: "ann from / %s" % tag, b: "ben from elsewhere %s" % tag}
    for n, text in said.items():
        n.send(text)
    h.check_delivery(ctx, said, [a, b])
    a.send("Q")
    b.send("Q")
    ctx.expect_exits([a, b])
    h.check_not_echoed(ctx, said, [a, b])
    ctx.check_stderr_clean([a, b])


def test_installed_run_uses_installed_library(ctx):
    """A script run by the installed binary requires the installed lib/
    modules (not those of the source tree)."""
    exe = installed_bin(ctx)
    sdir = ctx.tmpdir("script")
    probe = os.path.join(sdir, "probe.lua")
    with open(probe, "w") as f:
        f.write('print(package.searchpath("lines", package.path) or "none")\n'
                'print(type(require("lines").stdin))\n')
    r = ctx.run(["run", "--resolver", "none", "--data-dir", ctx.tmpdir("data"),
                 probe], bin=exe, cwd="/", name="installed run probe.lua")
    ctx.check(r.returncode == 0, "exit code %s, expected 0" % r.returncode)
    lines = r.stdout_lines
    want = os.path.realpath(os.path.join(installed(ctx), "share", "peermesh",
                                         "scripts"))
    found = os.path.realpath(lines[0]) if lines and lines[0] != "none" else None
    ctx.check(found and found.startswith(want + os.sep),
              "module 'lines' resolves to %r, expected a file under %s" % (
                  lines[0] if lines else None, want))
    ctx.check(len(lines) > 1 and lines[1] == "function",
              "require('lines').stdin is not a function: %r" % lines)


if __name__ == "__main__":
    try:
        h.main([test_cmake_install_layout, test_installed_version,
                test_installed_chat_from_another_directory,
                test_installed_run_uses_installed_library])
    finally:
        if STATE["prefix"]:
            if os.environ.get("PEERMESH_E2E_KEEP"):
                print("    kept %s" % STATE["prefix"])
            else:
                shutil.rmtree(STATE["prefix"], ignore_errors=True)
