-- Reads a stream line by line on the runtime's loop.
--
--   local lines = require "lines"
--   local input = lines.stdin(function(line) ... end, function() ... end)
--   input:close()
--
-- on_line gets each line without its "\n" (or "\r\n"); on_end runs once, at
-- end of input or on a read error. Works whether standard input is a
-- terminal, a pipe or a regular file.
local uv = require "luv"

local lines = {}

local function splitter(on_line)
  local pending = ""
  return function(data)
    pending = pending .. data
    while true do
      local nl = pending:find("\n", 1, true)
      if not nl then break end
      local line = pending:sub(1, nl - 1):gsub("\r$", "")
      pending = pending:sub(nl + 1)
      on_line(line)
    end
  end, function()
    if pending ~= "" then
      local rest = pending
      pending = ""
      on_line(rest)
    end
  end
end

-- A regular file cannot be polled; read it in chunks with fs_read.
local function read_file(fd, feed, finish)
  local closed = false
  local offset = 0
  local function next_chunk()
    if closed then return end
    uv.fs_read(fd, 65536, offset, function(err, data)
      if closed then return end
      if err or not data or #data == 0 then
        finish()
        return
      end
      offset = offset + #data
      feed(data)
      next_chunk()
    end)
  end
  next_chunk()
  return { close = function() closed = true end }
end

function lines.stdin(on_line, on_end)
  local feed, flush = splitter(on_line)
  local ended = false
  local function finish()
    if ended then return end
    ended = true
    flush()
    on_end()
  end
  local kind = uv.guess_handle(0)
  if kind == "file" then
    return read_file(0, feed, finish)
  end
  local handle
  if kind == "tty" then
    handle = uv.new_tty(0, true)
  else
    handle = uv.new_pipe(false)
    handle:open(0)
  end
  handle:read_start(function(err, data)
    if err or not data then
      handle:read_stop()
      finish()
    else
      feed(data)
    end
  end)
  return {
    close = function()
      if not handle:is_closing() then
        handle:read_stop()
        handle:close()
      end
    end,
  }
end

return lines
