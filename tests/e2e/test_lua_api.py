#!/usr/bin/env python3
"""The `peermesh` Lua module, exercised by scripts that check themselves:
each script asserts what it expects and prints "ok" last."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def run_script(ctx, name, source, args=()):
    d = ctx.tmpdir("data")
    sdir = ctx.tmpdir("script")
    path = os.path.join(sdir, name + ".lua")
    with open(path, "w") as f:
        f.write(source)
    r = ctx.run(["run", "--resolver", "none", "--listen", "127.0.0.1:0",
                 "--data-dir", d, path] + list(args))
    ctx.check(r.returncode == 0, "%s: exit code %s, expected 0; stderr %r" % (
        name, r.returncode, r.stderr))
    ctx.check(r.stdout_lines[-1:] == ["ok"], "%s: did not finish: stdout %r "
              "stderr %r" % (name, r.stdout, r.stderr))
    return r


def test_encode_decode(ctx):
    run_script(ctx, "json", r'''
local pm = require "peermesh"
assert(pm.encode({ member = "alice", text = "hi" }) ==
       '{"member":"alice","text":"hi"}')
assert(pm.encode({ 1, 2, "three" }) == '[1,2,"three"]')
local t = assert(pm.decode('{"n": 3, "list": [true, null]}'))
assert(t.n == 3 and t.list[1] == true and t.list[2] == pm.null)
local v, err, code = pm.decode('{"n": }')
assert(v == nil and code == "MALFORMED" and err:find("invalid JSON"), err)
v, err, code = pm.encode({ f = print })
assert(v == nil and code == "INVAL" and err:find("body.f"), err)
print("ok")
''')


def test_join_errors(ctx):
    run_script(ctx, "join", r'''
local pm = require "peermesh"
local node, err, code = pm.join("bad name!")
assert(node == nil and code == "INVAL" and err:find("mesh name"), err)
local a = assert(pm.join("one"))
-- a second node may not take the port the first one listens on
node, err, code = pm.join("two", { listen = "127.0.0.1:" .. a:port() })
assert(node == nil and code == "IO" and err:find("cannot listen"), err)
assert(not pcall(pm.join, "three", { peers = 42 }))
assert(not pcall(a.on, a, "no-such-event", print))
assert(not pcall(a.send, a, "", {}))
assert(a:mesh() == "one" and #a:id() == 64 and a:online() == false)
a:leave()
assert(not pcall(a.send, a, "Chat", {}))
print("ok")
''')


def test_filter(ctx):
    r = run_script(ctx, "filter", r'''
local pm = require "peermesh"
local node = assert(pm.join("filtered"))
local seen, delivered = {}, {}
node:filter(function(msg, origin)
  seen[#seen + 1] = msg.action .. "/" .. origin
  if msg.action == "Hidden" then return "remote" end
  if msg.action == "Nowhere" then return "none" end
  if msg.action == "Odd" then return "sideways" end
  if msg.action == "Broken" then error("filter exploded") end
  if msg.action == "Nested" then node:send("Inner", {}) end
end)
node:on("message", function(msg) delivered[#delivered + 1] = msg.action end)
for _, action in ipairs({ "Shown", "Hidden", "Nowhere", "Odd", "Broken",
                          "Nested" }) do
  assert(node:send(action, {}))
end
assert(table.concat(seen, " ") == "Shown/local Hidden/local Nowhere/local " ..
       "Odd/local Broken/local Nested/local", table.concat(seen, " "))
-- a broken filter lets messages through rather than losing them
assert(table.concat(delivered, " ") == "Shown Odd Broken Nested",
       table.concat(delivered, " "))
node:filter(nil)
assert(node:send("Plain", {}))
assert(delivered[#delivered] == "Plain")
node:leave()
print("ok")
''')
    for want in ("filter answered 'sideways'", "filter exploded",
                 "a propagation filter cannot use its node"):
        ctx.check(want in r.stderr, "stderr lacks %r: %r" % (want, r.stderr))


def test_handler_error_does_not_stop_the_runtime(ctx):
    r = run_script(ctx, "handler", r'''
local pm = require "peermesh"
local uv = require "luv"
local node = assert(pm.join("errors"))
local after = false
node:on("message", function() error("handler exploded") end)
node:on("message", function() after = true end)
node:send("Chat", { text = "x" })
assert(after, "the second handler still ran")
local t = uv.new_timer()
t:start(1, 0, function()
  t:close()
  node:leave()
  print("ok")
end)
''')
    ctx.check("handler exploded" in r.stderr and "stack traceback" in r.stderr,
              "the handler's error and traceback are not on stderr: %r" %
              r.stderr)


TESTS = [test_encode_decode, test_join_errors, test_filter,
         test_handler_error_does_not_stop_the_runtime]

if __name__ == "__main__":
    h.main(TESTS)
