-- A realistic mix: list 50 %, get 20 %, create 10 %, patch 15 %, delete 5 %, interleaved by
-- a fixed pattern of 20 requests (L list, G get, C create, P patch, D delete).
local common = dofile(os.getenv("BENCH_LUA") .. "/common.lua")
local PATTERN = "LGLCLPLGLPDLGLCLPLGL"
local next_user = common.walker(#common.tokens, false)
local next_task = common.walker(#common.tasks, false)
local next_delete = common.walker(#common.deletes, true)
local step = 0

function request()
  step = step + 1
  local kind = string.sub(PATTERN, (step - 1) % #PATTERN + 1, (step - 1) % #PATTERN + 1)
  if kind == "L" then
    return common.list_request(next_user())
  elseif kind == "G" then
    return common.get_request(common.tasks[next_task()])
  elseif kind == "C" then
    return common.create_request(next_user())
  elseif kind == "P" then
    return common.patch_request(common.tasks[next_task()])
  end
  return common.delete_request(common.deletes[next_delete()])
end
