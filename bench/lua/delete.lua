-- DELETE /api/v1/tasks/<id>: a fresh supply of tasks seeded for this run, each deleted once.
-- Threads walk disjoint ids; running out counts as "wrapped" (and answers 404).
local common = dofile(os.getenv("BENCH_LUA") .. "/common.lua")
local next_delete = common.walker(#common.deletes, true)

function request()
  return common.delete_request(common.deletes[next_delete()])
end
