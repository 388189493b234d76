-- GET /api/v1/tasks?limit=50: the first page of each user's tasks, users in turn.
local common = dofile(os.getenv("BENCH_LUA") .. "/common.lua")
local next_user = common.walker(#common.tokens, false)

function request()
  return common.list_request(next_user())
end
