-- Runs a hook (envoy_on_request / envoy_on_response) in its coroutine: makes
-- the handle in Lua (make_handle, a Lua C function in src/api/object.rs) from
-- the stream the driver passes, so starting a hook costs the driver only a
-- pointer and a number.
local hook, make_handle = ...
return function(stream, dir)
  return hook(make_handle(stream, dir))
end
