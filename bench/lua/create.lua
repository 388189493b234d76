-- POST /api/v1/tasks: a typical new task, users in turn.
local common = dofile(os.getenv("BENCH_LUA") .. "/common.lua")
local next_user = common.walker(#common.tokens, false)

function request()
  return common.create_request(next_user())
end
