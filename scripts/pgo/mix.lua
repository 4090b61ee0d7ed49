-- The training run's request mix for wrk (scripts/pgo-build): one connection cycles
-- through small and large answers, a browser-sized head, a POST with a length and one
-- chunked, a gzip-chunked answer and a 404 (HEADs go by curl: wrk would wait for a
-- HEAD's body). `wrk ... -- /bare` puts every path
-- under /bare/ (the route without failover and isolation features).
local reqs
local n = 0

function init(args)
  local p = args[1] or ""
  local body = string.rep("x", 2048)
  local browser = {
    ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    ["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ["Accept-Language"] = "en-GB,en;q=0.9",
    ["Cookie"] = "session=0123456789abcdef; theme=dark",
  }
  local chunked = "POST " .. p .. "/post HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
    .. "Content-Type: application/octet-stream\r\n\r\n400\r\n" .. string.rep("y", 1024)
    .. "\r\n400\r\n" .. string.rep("z", 1024) .. "\r\n0\r\n\r\n"
  reqs = {
    wrk.format("GET", p .. "/small"),
    wrk.format("GET", p .. "/16k"),
    wrk.format("GET", p .. "/2k", browser),
    wrk.format("GET", p .. "/small"),
    wrk.format("POST", p .. "/post", {["Content-Type"] = "application/json"}, body),
    wrk.format("GET", p .. "/64k"),
    wrk.format("GET", p .. "/2k", {["Accept-Encoding"] = "gzip"}),
    chunked,
    wrk.format("GET", p .. "/missing"),
    wrk.format("GET", p .. "/16k"),
    wrk.format("GET", p .. "/small"),
  }
end

function request()
  n = n % #reqs + 1
  return reqs[n]
end
