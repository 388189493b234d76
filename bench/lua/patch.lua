-- PATCH /api/v1/tasks/<id>: seeded tasks in turn, completing and reopening them.
local common = dofile(os.getenv("BENCH_LUA") .. "/common.lua")
local next_task = common.walker(#common.tasks, false)

function request()
  return common.patch_request(common.tasks[next_task()])
end
