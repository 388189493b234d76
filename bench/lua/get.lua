-- GET /api/v1/tasks/<id>: seeded tasks in turn, each with its owner's token.
-- Also the ceiling's only route (bench/ceiling_app.py serves the same path).
local common = dofile(os.getenv("BENCH_LUA") .. "/common.lua")
local next_task = common.walker(#common.tasks, false)

function request()
  return common.get_request(common.tasks[next_task()])
end
