-- The login storm: POST /api/v1/auth/login with the right password (bcrypt at the server's
-- cost), storm users in turn.
local common = dofile(os.getenv("BENCH_LUA") .. "/common.lua")
local next_login = common.walker(#common.logins, false)

function request()
  return common.login_request(common.logins[next_login()])
end
