-- The default chat, after PeerChannel's Chat sample: Join, Chat and Leave
-- messages with a body { member = nick, text = ... }. Replace it freely:
-- `peermesh run my_chat.lua` runs another script with the same options.
local uv = require "luv"
local peermesh = require "peermesh"
local lines = require "lines"

local nick = peermesh.options.nick
local node, input, signals
local quitting = false

local function status(text)
  io.stderr:write("* ", text, "\n")
end

-- Text from the network goes to a terminal: keep control characters
-- (escape sequences) out of it.
local function clean(s)
  return (tostring(s or ""):gsub("[%c\127]", "?"))
end

local function quit()
  if quitting then return end
  quitting = true
  if node then
    node:send("Leave", { member = nick })
    node:leave()
  end
  if input then input:close() end
  for _, s in ipairs(signals or {}) do s:close() end
end

local function on_message(msg)
  local body = msg.body
  if msg.own or type(body) ~= "table" then return end
  -- Like the Chat sample, also hide a member who took our nickname.
  if body.member == nick then return end
  local who = clean(body.member)
  if msg.action == "Chat" then
    print(("<%s> %s"):format(who, clean(body.text)))
  elseif msg.action == "Join" then
    print(("* %s joined"):format(who))
  elseif msg.action == "Leave" then
    print(("* %s left"):format(who))
  end
end

local function start()
  local err
  node, err = peermesh.join(peermesh.options.mesh)
  if not node then
    io.stderr:write("peermesh: cannot join: ", err, "\n")
    quit()
    return
  end
  local joined = false
  node:on("message", on_message)
  node:on("online", function()
    status(("online: connected to mesh '%s' as %s"):format(node:mesh(), nick))
    -- Announce ourselves once someone can hear it.
    if not joined then
      joined = true
      node:send("Join", { member = nick })
    end
  end)
  node:on("offline", function()
    status("offline: no neighbours; waiting for other members")
  end)
  status(("joined mesh '%s' as %s; type a line to chat, Q or /quit to leave")
    :format(node:mesh(), nick))
end

local function on_line(line)
  if quitting then return end
  if not nick then
    line = line:gsub("^%s+", ""):gsub("%s+$", "")
    if line == "" or #line > 64 or line:find("%c") then
      io.stdout:write("Nickname (1-64 characters): ")
      io.stdout:flush()
      return
    end
    nick = line
    start()
    return
  end
  if line == "Q" or line == "q" or line == "/quit" then
    quit()
    return
  end
  if line == "" or not node then return end
  if not node:online() then
    status("not connected yet: nobody heard that")
  end
  local ok, err = node:send("Chat", { member = nick, text = line })
  if not ok then status("not sent: " .. err) end
end

input = lines.stdin(on_line, quit)
signals = {}
for _, name in ipairs({ "sigint", "sigterm", "sighup" }) do
  local s = uv.new_signal()
  s:start(name, quit)
  signals[#signals + 1] = s
end

if nick then
  start()
else
  io.stdout:write("Nickname: ")
  io.stdout:flush()
end
