"""Shared code for the real-process tests of peermesh on loopback.

Standard library only. Every test script does:

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import harness as h
    ...
    if __name__ == "__main__":
        h.main([test_a, test_b, ...])

Each test function takes a `Context` that owns the processes it spawns and the
temporary directories it makes; both are cleaned up when the test ends, pass
or fail. Nothing here sleeps to wait for something: one reader thread per pipe
collects the lines a process prints and wakes whoever waits for a line; waits
have a deadline (DEFAULT_TIMEOUT seconds unless told) and on timeout fail
with the captured stdout/stderr of every process of the test.

Environment:
  PEERMESH_BIN      the peermesh binary to test (required)
  PEERMESH_SOURCE   source root (optional, for a few cross-checks)
  PEERMESH_BUILD    build directory (required by the install test)
  PEERMESH_E2E_TIMEOUT  seconds per wait (default 20)
  PEERMESH_E2E_KEEP     if set, temporary directories are kept (and printed)
  PEERMESH_E2E_VERBOSE  if set, nodes started with Context.chat get -v

A script may be given test names on its command line to run only those.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

DEFAULT_TIMEOUT = float(os.environ.get("PEERMESH_E2E_TIMEOUT", "20"))
# Every wait of a script ends by this many seconds after the script started,
# so that even when many waits time out the script still reports (and kills
# its processes) before ctest's TIMEOUT (180 s) kills it.
BUDGET = float(os.environ.get("PEERMESH_E2E_BUDGET", "160"))
_BUDGET_END = time.monotonic() + BUDGET
DUMP_MAX_LINES = 300  # per stream, in failure reports

MESH = "lobby"


class TestFailure(Exception):
    """A failed expectation; the runner prints it with every process's output."""


# --------------------------------------------------------------------------
# Environment and small helpers


def env_path(name, required=True):
    v = os.environ.get(name)
    if not v and required:
        sys.stderr.write(
            "%s: environment variable %s is not set (ctest sets it; by hand: "
            "PEERMESH_BIN=$PWD/peermesh PEERMESH_SOURCE=.. PEERMESH_BUILD=$PWD "
            "python3 %s)\n" % (os.path.basename(sys.argv[0]), name, sys.argv[0]))
        sys.exit(2)
    return os.path.abspath(v) if v else None


def peermesh_bin():
    return env_path("PEERMESH_BIN")


def free_ports(n=1):
    """n distinct free TCP ports on 127.0.0.1 (bound to port 0, read, closed).

    All sockets are held open until every port is picked, so the ports are
    distinct from one another."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port():
    return free_ports(1)[0]


def listener_inodes(port):
    """Inodes of the TCP sockets listening on `port` (any local address)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for row in f:
                    cols = row.split()
                    local, state, inode = cols[1], cols[3], cols[9]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                        inodes.add(inode)
        except OSError:
            pass
    return inodes


def pid_owns_socket(pid, inodes):
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


def who_listens(port, procs):
    """Which of `procs` (Proc objects, running) listens on TCP `port`.

    Returns (list of matching procs, whether any listener exists at all)."""
    inodes = listener_inodes(port)
    found = [p for p in procs if p.running() and pid_owns_socket(p.pid, inodes)]
    return found, bool(inodes)


def deadline_in(timeout=None):
    """The monotonic deadline `timeout` seconds (default DEFAULT_TIMEOUT)
    from now, never later than the script's time budget."""
    return min(time.monotonic() + (timeout or DEFAULT_TIMEOUT), _BUDGET_END)


def budget_note():
    if time.monotonic() >= _BUDGET_END:
        return " [the script's time budget of %ds is used up: waits end at " \
            "once]" % BUDGET
    return ""


def startswith(prefix):
    """A line matcher: lines starting with `prefix`."""
    def m(line):
        return line.startswith(prefix)
    m.__doc__ = "starting with %r" % prefix
    return m


def describe(match):
    if isinstance(match, str):
        return "%r" % match
    if isinstance(match, re.Pattern):
        return "matching /%s/" % match.pattern
    return getattr(match, "__doc__", None) or repr(match)


def matcher(match):
    if isinstance(match, str):
        return lambda line: line == match
    if isinstance(match, re.Pattern):
        return lambda line: match.search(line) is not None
    return match


# --------------------------------------------------------------------------
# One output stream of a process


class Stream:
    def __init__(self, owner, name, pipe):
        self.owner = owner
        self.name = name
        self.lines = []
        self.eof = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(
            target=self._read, args=(pipe,), daemon=True,
            name="%s-%s" % (owner, name))
        self.thread.start()

    def _read(self, pipe):
        try:
            for raw in iter(pipe.readline, b""):
                line = raw.decode("utf-8", "replace")
                if line.endswith("\n"):
                    line = line[:-1]
                if line.endswith("\r"):
                    line = line[:-1]
                with self.cond:
                    self.lines.append(line)
                    self.cond.notify_all()
        except (OSError, ValueError):
            pass
        finally:
            with self.cond:
                self.eof = True
                self.cond.notify_all()
            try:
                pipe.close()
            except OSError:
                pass

    def snapshot(self):
        with self.cond:
            return list(self.lines)

    def find(self, match):
        m = matcher(match)
        with self.cond:
            return [l for l in self.lines if m(l)]

    def wait(self, match, deadline):
        """The first line matching, or None at EOF / deadline (and why)."""
        m = matcher(match)
        with self.cond:
            checked = 0
            while True:
                for line in self.lines[checked:]:
                    if m(line):
                        return line, None
                checked = len(self.lines)
                if self.eof:
                    return None, "eof"
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None, "timeout"
                self.cond.wait(remaining)

    def wait_eof(self, deadline):
        with self.cond:
            while not self.eof:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(remaining)
            return True


# --------------------------------------------------------------------------
# A running process


_prctl = None
try:
    import ctypes

    _libc = ctypes.CDLL(None, use_errno=True)
    _prctl = _libc.prctl
except Exception:  # pragma: no cover - not Linux / no ctypes
    _prctl = None


def _die_with_parent():
    # PR_SET_PDEATHSIG: if this test runner is killed outright (ctest timeout),
    # the node dies with it instead of lingering on the machine.
    if _prctl is not None:
        _prctl(1, signal.SIGKILL, 0, 0, 0)


class Proc:
    def __init__(self, ctx, name, argv, env, cwd, stdin_open=True):
        self.ctx = ctx
        self.name = name
        self.argv = argv
        self.cwd = cwd
        self.returncode = None
        self.p = subprocess.Popen(
            argv, env=env, cwd=cwd,
            stdin=subprocess.PIPE if stdin_open else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent if _prctl is not None else None)
        self.pid = self.p.pid
        self.out = Stream(name, "stdout", self.p.stdout)
        self.err = Stream(name, "stderr", self.p.stderr)

    def __repr__(self):
        return "<%s pid %d>" % (self.name, self.pid)

    def running(self):
        return self.p.poll() is None

    def stream(self, which):
        return self.out if which == "stdout" else self.err

    def status(self):
        rc = self.p.poll()
        if rc is None:
            return "still running (pid %d)" % self.pid
        if rc < 0:
            try:
                return "killed by %s" % signal.Signals(-rc).name
            except ValueError:
                return "killed by signal %d" % -rc
        return "exited with code %d" % rc

    # -- waiting for output

    def wait_line(self, which, match, timeout=None, deadline=None, soft=False,
                  why=""):
        """Waits for a line on `which` ("stdout" or "stderr") that equals
        `match` (str), matches it (compiled regex) or satisfies it (callable).
        Returns the line. On timeout or end of output: raises TestFailure,
        or with soft=True records the problem and returns None."""
        if deadline is None:
            deadline = deadline_in(timeout)
        line, reason = self.stream(which).wait(match, deadline)
        if line is not None:
            return line
        if reason == "eof":
            self.p.wait()  # the pipe closed: the process is gone or going
            msg = "%s: %s closed (%s) without a line %s" % (
                self.name, which, self.status(), describe(match))
        else:
            msg = "%s: no line %s on %s within the deadline%s" % (
                self.name, describe(match), which, budget_note())
        if why:
            msg += " (%s)" % why
        if soft:
            self.ctx.problem(msg)
            return None
        raise TestFailure(msg)

    def wait_out(self, match, **kw):
        return self.wait_line("stdout", match, **kw)

    def wait_err(self, match, **kw):
        return self.wait_line("stderr", match, **kw)

    def stdout_lines(self):
        return self.out.snapshot()

    def stderr_lines(self):
        return self.err.snapshot()

    # -- input and termination

    def send(self, line):
        try:
            self.p.stdin.write((line + "\n").encode("utf-8"))
            self.p.stdin.flush()
        except (BrokenPipeError, ValueError, OSError) as e:
            raise TestFailure("%s: cannot write %r to its stdin (%s; %s)" % (
                self.name, line, e, self.status()))

    def close_stdin(self):
        try:
            if self.p.stdin:
                self.p.stdin.close()
        except OSError:
            pass

    def signal(self, sig):
        if self.running():
            self.p.send_signal(sig)

    def wait_exit(self, timeout=None, deadline=None, soft=False):
        """Waits for the process to exit; returns its exit code (negative:
        killed by that signal). Waits for its output pipes to close too, so
        every line it printed is captured. On timeout: TestFailure, or with
        soft=True a recorded problem and None."""
        if deadline is None:
            deadline = deadline_in(timeout)
        try:
            rc = self.p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            msg = "%s: did not exit within the deadline%s" % (self.name,
                                                               budget_note())
            if soft:
                self.ctx.problem(msg)
                return None
            raise TestFailure(msg)
        self.out.wait_eof(deadline)
        self.err.wait_eof(deadline)
        self.returncode = rc
        return rc

    def kill(self):
        if self.running():
            try:
                self.p.kill()
            except OSError:
                pass
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self.close_stdin()
        # give the readers a moment to drain what the pipes still hold
        d = time.monotonic() + 5
        self.out.wait_eof(d)
        self.err.wait_eof(d)

    def dump(self):
        parts = ["--- %s: %s" % (self.name, self.status()),
                 "    command: %s" % " ".join(_shell_quote(a) for a in self.argv)]
        if self.cwd:
            parts.append("    cwd: %s" % self.cwd)
        for s in (self.out, self.err):
            lines = s.snapshot()
            parts.append("    %s (%d lines)%s" % (
                s.name, len(lines), ":" if lines else ""))
            shown = lines[-DUMP_MAX_LINES:]
            if len(lines) > len(shown):
                parts.append("      ... %d earlier lines left out" %
                             (len(lines) - len(shown)))
            parts.extend("      | " + l for l in shown)
        return "\n".join(parts)


class Completed:
    """The result of a one-shot command (Context.run)."""

    def __init__(self, name, argv, cwd, rc, stdout, stderr, timed_out=False):
        self.name = name
        self.argv = argv
        self.cwd = cwd
        self.returncode = rc
        self.stdout = stdout
        self.stderr = stderr
        self.timed_out = timed_out

    @property
    def stdout_lines(self):
        return self.stdout.splitlines()

    @property
    def stderr_lines(self):
        return self.stderr.splitlines()

    def dump(self):
        parts = ["--- %s: %s" % (self.name,
                                 "timed out and was killed" if self.timed_out
                                 else "exited with code %s" % self.returncode),
                 "    command: %s" % " ".join(_shell_quote(a) for a in self.argv)]
        if self.cwd:
            parts.append("    cwd: %s" % self.cwd)
        for label, text in (("stdout", self.stdout), ("stderr", self.stderr)):
            lines = text.splitlines()
            parts.append("    %s (%d lines)%s" % (label, len(lines),
                                                  ":" if lines else ""))
            shown = lines[-DUMP_MAX_LINES:]
            if len(lines) > len(shown):
                parts.append("      ... %d earlier lines left out" %
                             (len(lines) - len(shown)))
            parts.extend("      | " + l for l in shown)
        return "\n".join(parts)


def _shell_quote(a):
    if a and re.fullmatch(r"[A-Za-z0-9_./:=@%+,-]+", a):
        return a
    return "'" + a.replace("'", "'\\''") + "'"


# --------------------------------------------------------------------------
# Per-test context


class Context:
    def __init__(self, name):
        self.name = name
        self.procs = []  # Proc and Completed, in start order
        self.tmpdirs = []
        self.problems = []
        self.notes = []
        self.bin = peermesh_bin()
        # Each test gets its own HOME / XDG directories so nothing touches the
        # user's files, and its own local resolver address so that nothing
        # ever uses the machine-wide default (tests run in parallel).
        home = self.tmpdir("home")
        self.env = dict(os.environ)
        self.env.update({
            "HOME": home,
            "XDG_DATA_HOME": os.path.join(home, "data"),
            "XDG_CONFIG_HOME": os.path.join(home, "config"),
            "XDG_CACHE_HOME": os.path.join(home, "cache"),
            "PEERMESH_LOCAL_RESOLVER": "127.0.0.1:%d" % free_port(),
        })

    # -- resources

    def tmpdir(self, label="tmp"):
        d = tempfile.mkdtemp(prefix="pm-e2e-%s-%s-" % (self.name[:24], label))
        self.tmpdirs.append(d)
        return d

    def spawn(self, name, args, env=None, cwd=None, stdin_open=True, bin=None):
        """Starts `peermesh ARGS` (or `bin ARGS`) and returns its Proc."""
        argv = [bin or self.bin] + list(args)
        e = dict(self.env)
        if env:
            e.update(env)
        p = Proc(self, name, argv, e, cwd, stdin_open)
        self.procs.append(p)
        return p

    def chat(self, nick, data_dir, args=(), name=None, env=None, cwd=None,
             bin=None, command_first=False, wait_joined=True):
        """Starts a chat node for `nick` with stdin open. By default waits
        for its "* joined mesh" status line. The Proc gets a `nick`."""
        opts = ["--nick", nick, "--data-dir", data_dir] + list(args)
        if os.environ.get("PEERMESH_E2E_VERBOSE"):
            opts.append("-v")
        # `peermesh chat OPTIONS` or plain `peermesh OPTIONS` (chat is the
        # default command)
        argv = ["chat"] + opts if command_first else opts
        p = self.spawn(name or nick, argv, env=env, cwd=cwd, bin=bin)
        p.nick = nick
        if wait_joined:
            p.wait_err(joined_line(nick))
        return p

    def run(self, args, name=None, env=None, cwd=None, timeout=None, bin=None,
            stdin_data=None):
        """Runs a one-shot command to completion; returns a Completed."""
        argv = [bin or self.bin] + list(args)
        e = dict(self.env)
        if env:
            e.update(env)
        name = name or " ".join(["peermesh"] + list(args))[:60]
        limit = max(1.0, deadline_in(timeout) - time.monotonic())
        try:
            r = subprocess.run(
                argv, env=e, cwd=cwd,
                input=(stdin_data or "").encode(),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                timeout=limit,
                preexec_fn=_die_with_parent if _prctl is not None else None)
            c = Completed(name, argv, cwd, r.returncode,
                          r.stdout.decode("utf-8", "replace"),
                          r.stderr.decode("utf-8", "replace"))
        except subprocess.TimeoutExpired as t:
            c = Completed(name, argv, cwd, None,
                          (t.stdout or b"").decode("utf-8", "replace"),
                          (t.stderr or b"").decode("utf-8", "replace"),
                          timed_out=True)
            self.procs.append(c)
            raise TestFailure("%s: did not finish within %.0fs%s" % (
                name, limit, budget_note()))
        self.procs.append(c)
        return c

    # -- checks

    def problem(self, msg):
        """Records a failed check; the test goes on and fails at its end."""
        self.problems.append(msg)

    def check(self, cond, msg):
        if not cond:
            self.problem(msg)
        return bool(cond)

    def require(self, cond, msg):
        if not cond:
            raise TestFailure(msg)

    def note(self, msg):
        self.notes.append(msg)

    def expect_lines(self, expectations, timeout=None, soft=True, why=""):
        """Waits, with ONE shared deadline, for every (proc, stream, match).

        Returns the list of missing expectations (recorded as problems with
        soft=True, raised as one TestFailure otherwise)."""
        deadline = deadline_in(timeout)
        missing = []
        for proc, which, match in expectations:
            line, reason = proc.stream(which).wait(match, deadline)
            if line is None:
                missing.append("%s: no line %s on %s (%s)" % (
                    proc.name, describe(match), which,
                    "its %s closed; %s" % (which, proc.status())
                    if reason == "eof" else "deadline passed" + budget_note()))
        if missing:
            msg = ("%d of %d expected lines did not arrive%s:\n  " % (
                len(missing), len(expectations),
                " (%s)" % why if why else "") + "\n  ".join(missing))
            if soft:
                self.problem(msg)
            else:
                raise TestFailure(msg)
        return missing

    def expect_exits(self, procs, code=0, timeout=None):
        """Waits (one shared deadline) for every proc to exit; records a
        problem for each that does not exit or exits with another code."""
        deadline = deadline_in(timeout)
        ok = True
        for p in procs:
            rc = p.wait_exit(deadline=deadline, soft=True)
            if rc is None:
                ok = False
            elif rc != code:
                ok = False
                self.problem("%s: %s, expected exit code %d" % (
                    p.name, p.status(), code))
        return ok

    def check_stderr_clean(self, procs):
        """No Lua traceback or sanitizer report on any stderr."""
        bad = re.compile(r"stack traceback|AddressSanitizer|LeakSanitizer|"
                         r"runtime error:|Segmentation fault|assertion",
                         re.IGNORECASE)
        for p in procs:
            hits = p.err.find(bad)
            self.check(not hits, "%s: unexpected error report on stderr: %r" % (
                p.name, hits[:3]))

    # -- end of test

    def dump(self):
        if not self.procs:
            return "(no processes were started)"
        return "\n".join(p.dump() for p in self.procs)

    def cleanup(self):
        for p in self.procs:
            if isinstance(p, Proc):
                try:
                    p.kill()
                except Exception:
                    pass
        if os.environ.get("PEERMESH_E2E_KEEP"):
            for d in self.tmpdirs:
                print("    kept %s" % d)
            return
        for d in self.tmpdirs:
            shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------
# The chat's contract


def joined_line(nick, mesh=MESH):
    return ("* joined mesh '%s' as %s; type a line to chat, Q or /quit to "
            "leave" % (mesh, nick))


def online_line(nick, mesh=MESH):
    return "* online: connected to mesh '%s' as %s" % (mesh, nick)


def chat_line(nick, text):
    return "<%s> %s" % (nick, text)


def joined_msg(nick):
    return "* %s joined" % nick


def left_msg(nick):
    return "* %s left" % nick


def wait_online(ctx, nodes, timeout=None):
    """Hard-waits until every node printed its "* online" line."""
    ctx.expect_lines([(n, "stderr", online_line(n.nick)) for n in nodes],
                     timeout=timeout, soft=False,
                     why="waiting for every node to be online")


def check_delivery(ctx, senders_lines, nodes, timeout=None, also=()):
    """senders_lines: {sender Proc: text}. Waits until each text reached every
    other node in `nodes` as "<nick> text" on stdout (soft). `also`: more
    (proc, stream, match) expectations waited for under the same deadline."""
    exp = list(also)
    for sender, text in senders_lines.items():
        for n in nodes:
            if n is not sender:
                exp.append((n, "stdout", chat_line(sender.nick, text)))
    return ctx.expect_lines(exp, timeout=timeout, why="chat delivery%s" % (
        " and presence" if also else ""))


def check_not_echoed(ctx, senders_lines, receivers=()):
    """Call after the processes exited: a sender's stdout never contains its
    own text; no receiver got a line twice (that one arrived at all is
    check_delivery's business)."""
    for sender, text in senders_lines.items():
        hits = [l for l in sender.stdout_lines() if text in l]
        ctx.check(not hits, "%s: printed its own line on stdout: %r" % (
            sender.name, hits))
        for r in receivers:
            if r is sender or r.nick == sender.nick:
                continue
            n = r.stdout_lines().count(chat_line(sender.nick, text))
            ctx.check(n <= 1, "%s: got %r %d times on stdout, expected once" % (
                r.name, chat_line(sender.nick, text), n))


HISTORY_TEXT = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \[([^\]]+)\] (.*)$")
HISTORY_KEYS = {"id", "mesh", "author", "seq", "time", "received", "hops",
                "own", "action", "body"}


def history(ctx, data_dir, extra=(), name=None):
    r = ctx.run(["history", "--data-dir", data_dir] + list(extra),
                name=name or "history %s %s" % (os.path.basename(data_dir),
                                                " ".join(extra)))
    return r


def history_json(ctx, data_dir, name=None):
    """Runs `history --json`; returns the list of parsed objects (problems
    recorded for unparsable lines or missing keys)."""
    r = history(ctx, data_dir, ["--json"], name=name)
    if not ctx.check(r.returncode == 0, "%s: exit code %s, expected 0" % (
            r.name, r.returncode)):
        return []
    out = []
    for i, line in enumerate(r.stdout_lines):
        try:
            obj = json.loads(line)
        except ValueError as e:
            ctx.problem("%s: line %d is not JSON (%s): %r" % (
                r.name, i + 1, e, line))
            continue
        if not isinstance(obj, dict):
            ctx.problem("%s: line %d is not a JSON object: %r" % (
                r.name, i + 1, line))
            continue
        missing = HISTORY_KEYS - set(obj)
        ctx.check(not missing, "%s: line %d lacks keys %s: %r" % (
            r.name, i + 1, sorted(missing), line))
        out.append(obj)
    return out


def check_history(ctx, data_dir, lines_by_nick, label, own_nicks=None):
    """`history` (text and --json) on data_dir holds each (nick, text) chat
    line exactly once. own_nicks: if given, the nicks whose lines must have
    own=true in --json (all others own=false)."""
    r = history(ctx, data_dir, name="history (%s)" % label)
    if ctx.check(r.returncode == 0, "%s: exit code %s, expected 0" % (
            r.name, r.returncode)):
        times = []
        for line in r.stdout_lines:
            m = HISTORY_TEXT.match(line)
            if not ctx.check(m, "%s: line not in the form 'YYYY-MM-DD HH:MM:SS "
                             "[mesh] ...': %r" % (r.name, line)):
                continue
            times.append(m.group(1))
        ctx.check(times == sorted(times), "%s: not oldest first: %r" % (
            r.name, times))
        for nick, text in lines_by_nick:
            want = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[%s\] %s$" % (
                re.escape(MESH), re.escape(chat_line(nick, text))))
            n = sum(1 for l in r.stdout_lines if want.match(l))
            ctx.check(n == 1, "%s: %r appears %d times, expected exactly "
                      "once" % (r.name, "[%s] %s" % (MESH, chat_line(nick, text)), n))
    objs = history_json(ctx, data_dir, name="history --json (%s)" % label)
    for nick, text in lines_by_nick:
        hits = [o for o in objs
                if o.get("action") == "Chat" and isinstance(o.get("body"), dict)
                and o["body"].get("member") == nick
                and o["body"].get("text") == text]
        if not ctx.check(len(hits) == 1, "history --json (%s): Chat with "
                         "member=%r text=%r appears %d times, expected once" % (
                             label, nick, text, len(hits))):
            continue
        o = hits[0]
        ctx.check(o.get("mesh") == MESH, "history --json (%s): mesh %r, "
                  "expected %r in %r" % (label, o.get("mesh"), MESH, o))
        if own_nicks is not None:
            want_own = nick in own_nicks
            ctx.check(o.get("own") is want_own, "history --json (%s): own=%r "
                      "for %s's line, expected %r" % (label, o.get("own"),
                                                      nick, want_own))
    return objs


# --------------------------------------------------------------------------
# Runner


def main(tests):
    peermesh_bin()
    only = sys.argv[1:]
    if only:
        unknown = [n for n in only if n not in {t.__name__ for t in tests}]
        if unknown:
            sys.stderr.write("unknown tests: %s\n" % ", ".join(unknown))
            sys.exit(2)
        tests = [t for t in tests if t.__name__ in only]

    # ctest or a user stopping us: clean up the nodes first.
    def stop(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)

    script = os.path.basename(sys.argv[0])
    passed = failed = 0
    for t in tests:
        started = time.monotonic()
        ctx = None
        detail = None
        try:
            ctx = Context(t.__name__)
            t(ctx)
            if ctx.problems:
                raise TestFailure("%d check(s) failed:\n- %s" % (
                    len(ctx.problems), "\n- ".join(ctx.problems)))
        except TestFailure as e:
            detail = str(e)
            if ctx and ctx.problems and not str(e).startswith(
                    "%d check(s) failed" % len(ctx.problems)):
                detail += "\nearlier failed checks:\n- " + "\n- ".join(
                    ctx.problems)
        except KeyboardInterrupt:
            if ctx:
                ctx.cleanup()
            print("%s: interrupted" % script)
            raise
        except Exception:
            detail = "error in the test itself:\n" + traceback.format_exc()
        finally:
            took = time.monotonic() - started
        if ctx:
            for n in ctx.notes:
                print("    note: %s" % n)
        if detail is None:
            passed += 1
            print("PASS %s (%.1fs)" % (t.__name__, took))
        else:
            failed += 1
            print("FAIL %s (%.1fs)\n%s" % (t.__name__, took, _indent(detail)))
            if ctx:
                print("  processes of this test:\n%s" % _indent(ctx.dump()))
        if ctx:
            ctx.cleanup()
        sys.stdout.flush()
    print("%d passed, %d failed" % (passed, failed))
    sys.stdout.flush()
    sys.exit(0 if failed == 0 and passed > 0 else 1)


def _indent(text, by="    "):
    return "\n".join(by + l for l in text.splitlines())
