std = "max"
codes = true
max_line_length = 120
exclude_files = { "build/**", ".ci/**" }
files["spec/**"] = { std = "+busted" }
files["tools/wecom-standin/**"] = { globals = { "ngx" } }
files["lua/wechat/work/transport/cosocket.lua"] = { read_globals = { "ngx" } }
files["lua/wechat/work/store/shared_dict.lua"] = { read_globals = { "ngx" } }
files["examples/openresty/**"] = { read_globals = { "ngx" } }
