-- Shared by every load script: the seeded data, per-thread walking, error counting and the
-- JSON summary that bench/load.py parses.
--
-- Environment (set by bench/load.py):
--   BENCH_DATA     folder holding tokens.txt, tasks.txt, logins.txt and deletes.txt
--   BENCH_THREADS  wrk's thread count (-t), so threads can walk disjoint ids
local M = {}

local folder = os.getenv("BENCH_DATA") or "."

-- Lines of a data file as lists of tab-separated fields; an absent file is empty.
local function read_rows(name)
  local rows = {}
  local handle = io.open(folder .. "/" .. name, "r")
  if handle == nil then
    return rows
  end
  for line in handle:lines() do
    local fields = {}
    for field in string.gmatch(line, "[^\t]+") do
      fields[#fields + 1] = field
    end
    if #fields > 0 then
      rows[#rows + 1] = fields
    end
  end
  handle:close()
  return rows
end

M.tokens = {}
for _, row in ipairs(read_rows("tokens.txt")) do
  M.tokens[#M.tokens + 1] = row[1]
end
M.tasks = read_rows("tasks.txt")        -- {user index (1-based), task id}: GET and PATCH
M.deletes = read_rows("deletes.txt")    -- {user index, task id}: each deleted once
M.logins = read_rows("logins.txt")      -- {email, password}: the login storm

local stride = tonumber(os.getenv("BENCH_THREADS") or "1")
local threads = {}
local next_id = 0

-- wrk calls setup once per thread, in the main Lua state: number the threads.
function setup(thread)
  thread:set("thread_index", next_id)
  next_id = next_id + 1
  threads[#threads + 1] = thread
end

-- Counters live in each thread's own Lua state; done() gathers them.
non2xx = 0
wrapped = 0
statuses = {}
thread_index = 0

-- A walker over 1..n: thread k takes k+1, k+1+stride, ...; `exhaustible` walkers count
-- each pass past the end (a DELETE supply that ran out).
function M.walker(n, exhaustible)
  local position = nil
  return function()
    if position == nil then
      position = thread_index
    end
    local index = position % n + 1
    if exhaustible and position >= n then
      wrapped = wrapped + 1
    end
    position = position + stride
    return index
  end
end

function M.auth(user_index)
  return "Bearer " .. M.tokens[tonumber(user_index)]
end

function M.get_headers(user_index)
  return { ["Authorization"] = M.auth(user_index) }
end

function M.json_headers(user_index)
  return { ["Authorization"] = M.auth(user_index), ["Content-Type"] = "application/json" }
end

-- Request builders, one per endpoint; ``row`` is {user index, task id}.
local create_body = '{"title": "Load test task", "notes": "written by bench/load.py", ' ..
  '"priority": "medium", "tags": ["bench", "load"], "due_at": "2026-12-01T09:00:00Z"}'
local patch_bodies = {
  '{"completed": true, "priority": "high"}',
  '{"completed": false, "title": "Patched by bench/load.py"}',
}
local patches = 0

function M.get_request(row)
  return wrk.format("GET", "/api/v1/tasks/" .. row[2], M.get_headers(row[1]))
end

function M.list_request(user_index)
  return wrk.format("GET", "/api/v1/tasks?limit=50", M.get_headers(user_index))
end

function M.create_request(user_index)
  return wrk.format("POST", "/api/v1/tasks", M.json_headers(user_index), create_body)
end

-- Alternately completes a task (and raises its priority) and reopens it (and renames it).
function M.patch_request(row)
  patches = patches + 1
  local body = patch_bodies[patches % 2 + 1]
  return wrk.format("PATCH", "/api/v1/tasks/" .. row[2], M.json_headers(row[1]), body)
end

function M.delete_request(row)
  return wrk.format("DELETE", "/api/v1/tasks/" .. row[2], M.get_headers(row[1]))
end

function M.login_request(row)
  local body = string.format('{"email": "%s", "password": "%s"}', row[1], row[2])
  return wrk.format("POST", "/api/v1/auth/login", { ["Content-Type"] = "application/json" }, body)
end

-- wrk's response hook: every status outside 2xx is an error.
function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    statuses[status] = (statuses[status] or 0) + 1
  end
end

-- One line of JSON for bench/load.py: throughput, latency percentiles (microseconds), errors.
function done(summary, latency, requests)
  local total_non2xx, total_wrapped, merged = 0, 0, {}
  for _, thread in ipairs(threads) do
    total_non2xx = total_non2xx + (thread:get("non2xx") or 0)
    total_wrapped = total_wrapped + (thread:get("wrapped") or 0)
    for status, count in pairs(thread:get("statuses") or {}) do
      merged[status] = (merged[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(merged) do
    parts[#parts + 1] = string.format('"%d": %d', status, count)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "mean_us": %.1f, "non2xx": %d, "connect": %d, ' ..
    '"read": %d, "write": %d, "timeout": %d, "wrapped": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, total_non2xx, e.connect, e.read,
    e.write, e.timeout, total_wrapped, table.concat(parts, ", ")))
end

return M
