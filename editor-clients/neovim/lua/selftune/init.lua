-- selftune for Neovim 0.11+: completions from the local model, acceptance recorded, status shown.
--
--   require("selftune").setup({})        -- every option below has a default
--
-- Neovim 0.12 shows suggestions as ghost text (vim.lsp.inline_completion); 0.11 offers them in the
-- completion menu (vim.lsp.completion). Either way the accept key inserts the suggestion and runs its
-- `selftune.accept` command, which is how the server learns that it was accepted.

local M = {}

M.defaults = {
  -- The server command; nil: `selftune serve` from PATH. (Never a program inside the workspace, such as its
  -- .venv/bin/selftune: a repository can ship one, and opening a file would run it.)
  cmd = nil,
  filetypes = {
    "python", "lua", "javascript", "javascriptreact", "typescript", "typescriptreact", "go", "rust", "c",
    "cpp", "java", "kotlin", "ruby", "php", "sh", "bash", "zsh", "cs", "swift", "scala", "haskell", "ocaml",
    "elixir", "erlang", "zig", "r", "julia", "sql", "html", "css", "scss", "toml", "yaml", "json", "make",
  },
  root_markers = { ".git", "pyproject.toml", "setup.py", "package.json", "Cargo.toml", "go.mod", ".selftune" },
  -- Server settings (README "Settings"), camelCase: sent at start and on every change.
  settings = {},
  -- Ask for completions as you type, at the server's trigger characters (0.11: ".", "(", " ").
  autotrigger = true,
  -- Insert-mode keys; false turns one off.
  keys = {
    accept = "<Tab>",         -- accept the suggestion (falls back to the key's own meaning when there is none)
    trigger = "<C-Space>",    -- ask for a suggestion now (in the completion menu)
  },
  -- 0.11: the completion menu's options for buffers selftune is attached to (the first item selected,
  -- nothing inserted until you accept). nil leaves 'completeopt' alone.
  completeopt = "menu,menuone,noinsert,popup",
}

M.config = vim.deepcopy(M.defaults)
M.state = nil -- the newest `selftune/status` the server sent (see README: the command `selftune.status`)

local NAME = "selftune"

local function has_inline()
  return vim.lsp.inline_completion ~= nil and vim.lsp.inline_completion.enable ~= nil
end

--- The server command.
function M.server_cmd()
  return M.config.cmd or { "selftune", "serve" }
end

--- The running selftune client for a buffer (or any), or nil.
function M.client(bufnr)
  local clients = vim.lsp.get_clients({ name = NAME, bufnr = bufnr })
  if #clients == 0 and bufnr then
    clients = vim.lsp.get_clients({ name = NAME })
  end
  return clients[1]
end

--- One line for a statusline: "selftune gemma3-270m · base · testing 3/12 nearest tests".
function M.statusline()
  local s = M.state
  if not s then
    return M.client() and "selftune: starting" or ""
  end
  local model = s.model or "no model"
  if s.modelState == "loading" then
    model = model .. " (loading)"
  elseif s.modelState == "error" then
    model = model .. " (failed)"
  end
  local parts = { "selftune " .. model, s.adapter or "base", s.state or "idle" }
  local p = s.progress
  if p then
    local detail = p.message ~= "" and p.message or p.title
    if p.percentage ~= vim.NIL and p.percentage then
      detail = string.format("%s %d%%", detail, p.percentage)
    end
    parts[3] = parts[3] .. " " .. detail
  end
  return table.concat(parts, " · ")
end

local function on_status(_, result)
  M.state = result
  vim.api.nvim_exec_autocmds("User", { pattern = "SelftuneStatus", modeline = false })
end

--- Run a server command; `done(result)` on success, an error message otherwise.
local function execute(command, done, arguments)
  local client = M.client(vim.api.nvim_get_current_buf())
  if not client then
    vim.notify("selftune: the server is not running in this buffer", vim.log.levels.WARN)
    return
  end
  client:request("workspace/executeCommand", { command = command, arguments = arguments or {} }, function(err, result)
    if err then
      vim.notify(err.message or tostring(err), vim.log.levels.ERROR)
    elseif done then
      done(result)
    end
  end)
end

local function scratch(title, lines)
  vim.cmd("botright new")
  local buf = vim.api.nvim_get_current_buf()
  vim.bo[buf].buftype = "nofile"
  vim.bo[buf].bufhidden = "wipe"
  vim.api.nvim_buf_set_name(buf, title)
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].modifiable = false
end

--- Change one server setting for the running client (and for clients started later).
function M.set(key, value)
  M.config.settings[key] = value
  local client = M.client(vim.api.nvim_get_current_buf())
  if client then
    client.settings.selftune = client.settings.selftune or {}
    client.settings.selftune[key] = value
    client:notify("workspace/didChangeConfiguration", { settings = client.settings })
  end
end

local function toggle(key, default)
  local client = M.client(vim.api.nvim_get_current_buf())
  local current = M.config.settings[key]
  if client and client.settings.selftune and client.settings.selftune[key] ~= nil then
    current = client.settings.selftune[key]
  end
  if current == nil then
    current = default
  end
  M.set(key, not current)
  vim.notify(string.format("selftune: %s %s", key, not current and "on" or "off"))
end

M.commands = {
  status = function()
    execute("selftune.status", function(result)
      on_status(nil, result)
      vim.notify(M.statusline())
    end)
  end,
  stats = function()
    execute("selftune.stats", function(result)
      local lines = {}
      for _, folder in ipairs(result.folders or {}) do
        vim.list_extend(lines, vim.split(folder.text, "\n"))
        table.insert(lines, "")
      end
      scratch("selftune://stats", lines)
    end)
  end,
  adapt = function()
    execute("selftune.adapt", function()
      vim.notify("selftune: adaptation started")
    end)
  end,
  report = function()
    execute("selftune.report", function(result)
      local path = result.reports[1]
      vim.notify("selftune: report written to " .. path)
      if vim.ui.open then
        vim.ui.open(path)
      end
    end)
  end,
  record = function()
    toggle("record", true)
  end,
  tests = function()
    toggle("testFeedback", false)
  end,
  -- Allow this workspace to run its own code (tests on save, self-revision), as `selftune trust DIR` does;
  -- the server says what it recorded. A change to the workspace's .selftune/config.toml withdraws it.
  trust = function()
    execute("selftune.trust")
  end,
  untrust = function()
    execute("selftune.untrust")
  end,
  -- The adapters trained on this workspace, the one in use marked; `:Selftune use ID` (or `base`) switches.
  adapters = function()
    execute("selftune.adapters", function(result)
      local lines = {}
      for _, folder in ipairs(result.folders or {}) do
        table.insert(lines, folder.root)
        vim.list_extend(lines, #folder.text > 0 and folder.text or { "  no adapters yet" })
        table.insert(lines, "")
      end
      scratch("selftune://adapters", lines)
    end)
  end,
  use = function(id)
    if not id then
      vim.notify("selftune: :Selftune use ID (or base)", vim.log.levels.ERROR)
      return
    end
    execute("selftune.useAdapter", function(result)
      vim.notify("selftune: serving " .. (result.using ~= vim.NIL and result.using or "the base model"))
    end, { id })
  end,
}

local function user_command(opts)
  local run = M.commands[opts.fargs[1] or "status"]
  if run and opts.fargs[2] then
    local arg = opts.fargs[2]
    local command = run
    run = function()
      command(arg)
    end
  end
  if not run then
    vim.notify("selftune: unknown subcommand " .. opts.fargs[1] .. "; one of: "
      .. table.concat(vim.tbl_keys(M.commands), ", "), vim.log.levels.ERROR)
    return
  end
  run()
end

--- The selftune item in the completion menu (0.11), as its index, or nil.
local function menu_item(client_id)
  if vim.fn.pumvisible() == 0 then
    return nil
  end
  local info = vim.fn.complete_info({ "items", "selected" })
  local function ours(item)
    local data = type(item.user_data) == "table" and item.user_data or {}
    local lsp = vim.tbl_get(data, "nvim", "lsp") or {}
    return lsp.client_id == client_id
  end
  if info.selected >= 0 and ours(info.items[info.selected + 1]) then
    return info.selected
  end
  for index, item in ipairs(info.items) do
    if ours(item) then
      return index - 1
    end
  end
end

--- Accept the suggestion in the current buffer; false when there is none.
function M.accept()
  local bufnr = vim.api.nvim_get_current_buf()
  local client = M.client(bufnr)
  if not client then
    return false
  end
  if has_inline() and vim.lsp.inline_completion.get({ bufnr = bufnr }) then
    return true
  end
  local index = menu_item(client.id)
  if index == nil then
    return false
  end
  -- Select it and close the menu as <C-y> would: vim.lsp.completion then applies the item and runs its command.
  vim.api.nvim_select_popupmenu_item(index, true, true, {})
  return true
end

--- Ask for a suggestion now, in the completion menu.
function M.trigger()
  vim.lsp.completion.get()
end

local function map_keys(bufnr)
  local keys = M.config.keys
  if keys.accept then
    vim.keymap.set("i", keys.accept, function()
      if not M.accept() then
        vim.api.nvim_feedkeys(vim.keycode(keys.accept), "n", false)
      end
    end, { buffer = bufnr, desc = "selftune: accept the suggestion" })
  end
  if keys.trigger then
    vim.keymap.set("i", keys.trigger, M.trigger, { buffer = bufnr, desc = "selftune: suggest" })
  end
end

--- 0.11 inserts a plain-text item only up to its first space; a suggestion is inserted whole.
local function convert(item)
  if item.command and item.command.command == "selftune.accept" then
    return { word = item.textEdit and item.textEdit.newText or item.insertText or item.label }
  end
  return {}
end

local function on_attach(client, bufnr)
  -- The menu is there on every version (0.12: on request only, next to the ghost text).
  local inline = has_inline()
  if inline then
    vim.lsp.inline_completion.enable(true, { bufnr = bufnr, client_id = client.id })
  end
  vim.lsp.completion.enable(true, client.id, bufnr, { autotrigger = M.config.autotrigger and not inline,
                                                      convert = convert })
  if M.config.completeopt then
    vim.bo[bufnr].completeopt = M.config.completeopt
  end
  map_keys(bufnr)
end

function M.setup(opts)
  M.config = vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), opts or {})
  if vim.fn.has("nvim-0.11") == 0 then
    vim.notify("selftune needs Neovim 0.11 or newer (vim.lsp.config)", vim.log.levels.ERROR)
    return
  end
  vim.lsp.config(NAME, {
    cmd = function(dispatchers)
      local root = vim.fs.root(0, M.config.root_markers) or vim.fn.getcwd()
      return vim.lsp.rpc.start(M.server_cmd(), dispatchers, { cwd = root })
    end,
    filetypes = M.config.filetypes,
    root_markers = M.config.root_markers,
    init_options = { selftune = M.config.settings },
    settings = { selftune = M.config.settings },
    capabilities = { experimental = { selftuneStatus = true } },
    handlers = { ["selftune/status"] = on_status },
    on_attach = on_attach,
  })
  vim.lsp.enable(NAME)
  vim.api.nvim_create_user_command("Selftune", user_command, {
    nargs = "*",
    complete = function()
      return vim.tbl_keys(M.commands)
    end,
    desc = "selftune: status | stats | adapt | report | record | tests | trust | untrust | adapters | use ID",
  })
end

return M
