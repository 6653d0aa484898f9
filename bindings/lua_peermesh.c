/* The `peermesh` Lua module: joining meshes, handlers, sending.
 *
 * A node is a full userdata ("peermesh.node") holding the io node and a
 * registry reference to a table of handler lists. While joined, the userdata
 * is anchored in the registry so a script need not keep it alive. Runtime
 * failures return nil, "ENAME: message", "ENAME" like luv; wrong argument
 * types raise. */
#include "lua_peermesh.h"

#include <lauxlib.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "io_node.h"
#include "json.h"
#include "password.h"

#define NODE_MT "peermesh.node"
#define HOST_KEY "peermesh.host"
#define OPTS_KEY "peermesh.options"

typedef struct lua_node {
  pm_io_node *io; /* NULL once left */
  lua_State *L;
  int self_ref;     /* anchors the userdata while joined */
  int handlers_ref; /* table: event name -> array of functions */
  int filter_ref;   /* the propagation filter function, or LUA_NOREF */
  int in_filter;    /* the filter is running: the node must not be used */
} lua_node;

static const char *const event_names[] = {
    "message",       "online",     "offline",       "neighbor_up",
    "neighbor_down", "link_error", "member_joined", "member_left",
    "member_failed", NULL};

static pm_host *get_host(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, HOST_KEY);
  pm_host *h = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return h;
}

static int push_fail(lua_State *L, int code, const char *msg) {
  const char *name = pm_errname(code);
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", name, msg);
  lua_pushstring(L, name);
  return 3;
}

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg)
    msg = luaL_tolstring(L, 1, NULL);
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int pm_lua_call(lua_State *L, int nargs, const char *what) {
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, traceback);
  lua_insert(L, base);
  int rc = lua_pcall(L, nargs, 0, base);
  if (rc != LUA_OK) {
    fprintf(stderr, "peermesh: error in %s: %s\n", what,
            lua_tostring(L, -1) ? lua_tostring(L, -1) : "(error object)");
    lua_pop(L, 1);
  }
  lua_remove(L, base);
  return rc;
}

static void push_hex(lua_State *L, const uint8_t *bin, size_t n) {
  char hex[2 * 64 + 1];
  sodium_bin2hex(hex, sizeof hex, bin, n);
  lua_pushstring(L, hex);
}

static int all_zero(const uint8_t *p, size_t n) {
  uint8_t acc = 0;
  for (size_t i = 0; i < n; i++)
    acc |= p[i];
  return acc == 0;
}

/* Pushes the event as a table; returns the event's name or NULL to skip.
 * `text` describes a link error. */
static const char *push_event(lua_State *L, const pm_event *ev,
                              const char *text) {
  switch (ev->kind) {
  case PM_EV_MESSAGE:
    lua_createtable(L, 0, 9);
    push_hex(L, ev->id, PM_MSG_ID_LEN);
    lua_setfield(L, -2, "id");
    push_hex(L, ev->origin, PM_NODE_ID_LEN);
    lua_setfield(L, -2, "from");
    lua_pushstring(L, ev->action);
    lua_setfield(L, -2, "action");
    if (pm_json_decode(L, (const char *)ev->body, ev->body_len)) {
      lua_setfield(L, -2, "body");
    } else {
      lua_setfield(L, -2, "error"); /* the body is not JSON: say why */
      lua_pushlstring(L, (const char *)ev->body, ev->body_len);
      lua_setfield(L, -2, "raw");
    }
    lua_pushboolean(L, ev->own);
    lua_setfield(L, -2, "own");
    lua_pushinteger(L, (lua_Integer)ev->seq);
    lua_setfield(L, -2, "seq");
    lua_pushinteger(L, (lua_Integer)ev->time_ms);
    lua_setfield(L, -2, "time");
    lua_pushinteger(L, (lua_Integer)ev->hops);
    lua_setfield(L, -2, "hops");
    return "message";
  case PM_EV_ONLINE:
  case PM_EV_OFFLINE:
    lua_createtable(L, 0, 0);
    return ev->kind == PM_EV_ONLINE ? "online" : "offline";
  case PM_EV_NEIGHBOR_UP:
  case PM_EV_NEIGHBOR_DOWN:
    lua_createtable(L, 0, 3);
    push_hex(L, ev->peer, PM_NODE_ID_LEN);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, ev->addr);
    lua_setfield(L, -2, "addr");
    if (ev->kind == PM_EV_NEIGHBOR_DOWN) {
      lua_pushstring(L, pm_close_reason_name(ev->reason));
      lua_setfield(L, -2, "reason");
    }
    return ev->kind == PM_EV_NEIGHBOR_UP ? "neighbor_up" : "neighbor_down";
  case PM_EV_LINK_ERROR:
    lua_createtable(L, 0, 4);
    if (!all_zero(ev->peer, PM_NODE_ID_LEN)) {
      push_hex(L, ev->peer, PM_NODE_ID_LEN);
      lua_setfield(L, -2, "id");
    }
    lua_pushstring(L, ev->addr ? ev->addr : "");
    lua_setfield(L, -2, "addr");
    lua_pushstring(L, pm_errname(ev->error));
    lua_setfield(L, -2, "error");
    lua_pushstring(L, text ? text : pm_strerror(ev->error));
    lua_setfield(L, -2, "message");
    return "link_error";
  case PM_EV_MEMBER_JOINED:
  case PM_EV_MEMBER_LEFT:
  case PM_EV_MEMBER_FAILED:
    lua_createtable(L, 0, 1);
    push_hex(L, ev->peer, PM_NODE_ID_LEN);
    lua_setfield(L, -2, "id");
    return ev->kind == PM_EV_MEMBER_JOINED ? "member_joined"
           : ev->kind == PM_EV_MEMBER_LEFT ? "member_left"
                                           : "member_failed";
  default:
    return NULL;
  }
}

static void on_io_event(void *ud, pm_io_node *io, const pm_event *ev) {
  lua_node *ln = ud;
  lua_State *L = ln->L;
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 8))
    return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ln->handlers_ref);
  const char *name = push_event(L, ev, pm_io_node_event_text(io));
  if (!name) {
    lua_settop(L, top);
    return;
  }
  int evidx = lua_gettop(L);
  if (lua_getfield(L, evidx - 1, name) == LUA_TTABLE) {
    int list = lua_gettop(L);
    lua_Integer count = luaL_len(L, list);
    char what[64];
    snprintf(what, sizeof what, "'%s' handler", name);
    for (lua_Integer i = 1; i <= count; i++) {
      lua_rawgeti(L, list, i);
      lua_pushvalue(L, evidx);
      pm_lua_call(L, 1, what);
      if (!ln->io) /* a handler left the mesh: no more events */
        break;
    }
  }
  lua_settop(L, top);
}

static lua_node *check_node(lua_State *L) {
  return luaL_checkudata(L, 1, NODE_MT);
}

static lua_node *check_joined(lua_State *L) {
  lua_node *ln = check_node(L);
  if (!ln->io)
    luaL_error(L, "this node has left its mesh");
  if (ln->in_filter)
    luaL_error(L, "a propagation filter cannot use its node");
  return ln;
}

static const char *const propagation_names[] = {"none", "local", "remote",
                                                "both", NULL};

/* Runs the script's filter for one message. An error, or an answer that is
 * not one of the four names, counts as "both": a broken filter must not
 * silently swallow the mesh's traffic. */
static int run_filter(void *ud, const pm_event *ev, int origination) {
  lua_node *ln = ud;
  lua_State *L = ln->L;
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 8))
    return PM_PROPAGATE_BOTH;
  lua_pushcfunction(L, traceback);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ln->filter_ref);
  push_event(L, ev, NULL);
  lua_pushstring(L, origination == PM_ORIGIN_LOCAL ? "local" : "remote");
  ln->in_filter = 1;
  int rc = lua_pcall(L, 2, 1, top + 1);
  ln->in_filter = 0;
  int how = PM_PROPAGATE_BOTH;
  if (rc != LUA_OK) {
    fprintf(stderr, "peermesh: error in filter: %s\n",
            lua_tostring(L, -1) ? lua_tostring(L, -1) : "(error object)");
  } else if (!lua_isnil(L, -1)) {
    const char *answer = lua_tostring(L, -1);
    int i = 0;
    while (answer && propagation_names[i] &&
           strcmp(propagation_names[i], answer))
      i++;
    if (answer && propagation_names[i])
      how = i;
    else
      fprintf(stderr,
              "peermesh: filter answered '%s'; expected none, local, "
              "remote or both\n",
              answer ? answer : "?");
  }
  lua_settop(L, top);
  return how;
}

/* node:filter(fn | nil) -> node */
static int l_filter(lua_State *L) {
  lua_node *ln = check_joined(L);
  if (!lua_isnoneornil(L, 2))
    luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_unref(L, LUA_REGISTRYINDEX, ln->filter_ref);
  ln->filter_ref = LUA_NOREF;
  if (lua_isnoneornil(L, 2)) {
    pm_io_node_set_filter(ln->io, NULL, NULL);
  } else {
    lua_pushvalue(L, 2);
    ln->filter_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    pm_io_node_set_filter(ln->io, run_filter, ln);
  }
  lua_settop(L, 1);
  return 1;
}

/* Reads an optional array of strings from field `key` of the table at idx. */
static size_t string_list(lua_State *L, int idx, const char *key,
                          const char **out, size_t max) {
  size_t n = 0;
  int t = lua_getfield(L, idx, key);
  if (t == LUA_TSTRING) {
    out[n++] = lua_tostring(L, -1);
    lua_pop(L, 1); /* strings stay alive: the options table references them */
    return n;
  }
  if (t != LUA_TNIL && t != LUA_TTABLE)
    luaL_error(L, "option '%s' must be a string or a list of strings", key);
  if (t == LUA_TTABLE) {
    lua_Integer len = luaL_len(L, -1);
    if ((size_t)len > max)
      luaL_error(L, "option '%s' has more than %d entries", key, (int)max);
    for (lua_Integer i = 1; i <= len; i++) {
      if (lua_rawgeti(L, -1, i) != LUA_TSTRING)
        luaL_error(L, "option '%s' must hold strings", key);
      out[n++] = lua_tostring(L, -1);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return n;
}

/* Reads mesh `mesh`'s password from `file` (password.h rules: one line,
 * mode 0600) and derives its link key into locked memory (*psk). Returns 0,
 * or the number of values pushed for a failure (nil, err, code). */
static int mesh_psk(const char *mesh, const char *file, uint8_t **psk,
                    lua_State *L) {
  char err[512];
  size_t len = 0;
  char *pw = sodium_malloc(PM_PASSWORD_MAX + 1);
  *psk = sodium_malloc(PM_PSK_LEN);
  if (!pw || !*psk) {
    sodium_free(pw);
    sodium_free(*psk);
    *psk = NULL;
    return push_fail(L, PM_ERR_NOMEM, "out of memory");
  }
  pm_password_source src = {file, 0, mesh};
  int rc =
      pm_password_load(&src, pw, PM_PASSWORD_MAX + 1, &len, err, sizeof err);
  if (rc == 0) {
    rc = pm_psk_derive(mesh, pw, len, *psk);
    if (rc)
      snprintf(err, sizeof err,
               "cannot derive the key of mesh '%s' from its password: %s", mesh,
               pm_strerror(rc));
  } else if (rc == PM_PASSWORD_NONE) { /* NEVER: a file was given */
    rc = PM_ERR_INVAL;
    snprintf(err, sizeof err, "no password in %s", file);
  }
  sodium_free(pw); /* wipes */
  if (rc) {
    sodium_free(*psk);
    *psk = NULL;
    return push_fail(L, rc, err);
  }
  return 0;
}

/* peermesh.join([mesh], [options]) */
static int l_join(lua_State *L) {
  pm_host *host = get_host(L);
  const pm_host_options *ho = pm_host_options_get(host);
  lua_settop(L, 2);
  int opt_idx = 2;
  const char *mesh = ho->mesh ? ho->mesh : "lobby";
  if (lua_type(L, 1) == LUA_TTABLE) {
    opt_idx = 1;
  } else if (!lua_isnoneornil(L, 1)) {
    mesh = luaL_checkstring(L, 1);
  }
  if (!lua_isnoneornil(L, opt_idx))
    luaL_checktype(L, opt_idx, LUA_TTABLE);
  else {
    lua_newtable(L);
    lua_replace(L, opt_idx);
  }
  pm_join_options jo;
  memset(&jo, 0, sizeof jo);
  jo.mesh = mesh;
  jo.listen = ho->listen;
  jo.peers = ho->peers;
  jo.npeers = ho->npeers;
  jo.resolvers = ho->resolvers;
  jo.nresolvers = ho->nresolvers;
  jo.resolver_none = ho->resolver_none;

  if (lua_getfield(L, opt_idx, "listen") != LUA_TNIL)
    jo.listen = luaL_checkstring(L, -1);
  lua_pop(L, 1);
  const char *peers[32], *resolvers[8];
  lua_getfield(L, opt_idx, "peers");
  int has_peers = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (has_peers) {
    jo.npeers = string_list(L, opt_idx, "peers", peers, 32);
    jo.peers = peers;
  }
  int rt = lua_getfield(L, opt_idx, "resolvers");
  lua_pop(L, 1);
  if (rt == LUA_TBOOLEAN) {
    lua_getfield(L, opt_idx, "resolvers");
    if (lua_toboolean(L, -1))
      return luaL_error(L, "option 'resolvers' may be false or a list");
    lua_pop(L, 1);
    jo.resolver_none = 1;
    jo.nresolvers = 0;
  } else if (rt != LUA_TNIL) {
    jo.nresolvers = string_list(L, opt_idx, "resolvers", resolvers, 8);
    jo.resolvers = resolvers;
    jo.resolver_none = 0;
  }

  /* password_file: this mesh has a password (read, turned into the link
   * key and wiped here; Argon2id runs once per process and password). */
  uint8_t *psk = NULL;
  if (lua_getfield(L, opt_idx, "password_file") != LUA_TNIL) {
    const char *file = luaL_checkstring(L, -1);
    int rc = mesh_psk(mesh, file, &psk, L);
    if (rc)
      return rc; /* nil, err, code pushed */
    jo.psk = psk;
  }
  lua_pop(L, 1);

  lua_node *ln = lua_newuserdatauv(L, sizeof *ln, 0);
  memset(ln, 0, sizeof *ln);
  ln->L = L;
  ln->self_ref = LUA_NOREF;
  ln->handlers_ref = LUA_NOREF;
  ln->filter_ref = LUA_NOREF;
  luaL_setmetatable(L, NODE_MT);
  char err[512];
  int rc =
      pm_io_node_join(host, &jo, on_io_event, ln, &ln->io, err, sizeof err);
  sodium_free(psk); /* the node keeps its copy; this one is wiped */
  if (rc)
    return push_fail(L, rc, err);
  lua_newtable(L);
  ln->handlers_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  ln->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

/* node:on(event, fn) -> node */
static int l_on(lua_State *L) {
  lua_node *ln = check_joined(L);
  int ev = luaL_checkoption(L, 2, NULL, event_names);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ln->handlers_ref);
  if (lua_getfield(L, -1, event_names[ev]) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, event_names[ev]);
  }
  lua_pushvalue(L, 3);
  lua_rawseti(L, -2, luaL_len(L, -2) + 1);
  lua_settop(L, 1);
  return 1;
}

/* node:send(action, body, [options]) -> id | nil, err, code */
static int l_send(lua_State *L) {
  lua_node *ln = check_joined(L);
  size_t alen;
  const char *action = luaL_checklstring(L, 2, &alen);
  if (alen == 0 || alen > PM_ACTION_MAX || strlen(action) != alen)
    return luaL_argerror(L, 2, "action must be 1-64 bytes without NUL");
  lua_settop(L, 4);
  int has_hops = 0;
  uint32_t hops = 0;
  if (!lua_isnoneornil(L, 4)) {
    luaL_checktype(L, 4, LUA_TTABLE);
    if (lua_getfield(L, 4, "hops") != LUA_TNIL) {
      lua_Integer h = luaL_checkinteger(L, -1);
      if (h < 0 || h > (lua_Integer)UINT32_MAX)
        return luaL_error(L, "option 'hops' must be 0..%u", UINT32_MAX);
      has_hops = 1;
      hops = (uint32_t)h;
    }
    lua_pop(L, 1);
  }
  if (lua_isnoneornil(L, 3)) {
    lua_newtable(L);
    lua_replace(L, 3);
  }
  if (!pm_json_encode(L, 3))
    return luaL_error(L, "cannot send this body: %s", lua_tostring(L, -1));
  size_t blen;
  const char *body = lua_tolstring(L, -1, &blen);
  if (blen > PM_BODY_MAX)
    return push_fail(L, PM_ERR_INVAL, "body is larger than 65000 bytes");
  uint8_t id[PM_MSG_ID_LEN];
  int rc = pm_io_node_send(ln->io, action, body, blen, has_hops, hops, id);
  if (rc)
    return push_fail(L, rc, pm_strerror(rc));
  push_hex(L, id, sizeof id);
  return 1;
}

static void node_release(lua_State *L, lua_node *ln) {
  if (ln->io) {
    pm_io_node *io = ln->io;
    ln->io = NULL;
    pm_io_node_leave(io);
  }
  luaL_unref(L, LUA_REGISTRYINDEX, ln->handlers_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, ln->self_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, ln->filter_ref);
  ln->handlers_ref = ln->self_ref = ln->filter_ref = LUA_NOREF;
}

/* node:leave(): also the __gc and __close metamethods */
static int l_leave(lua_State *L) {
  lua_node *ln = check_node(L);
  if (ln->in_filter)
    return luaL_error(L, "a propagation filter cannot use its node");
  node_release(L, ln);
  return 0;
}

static int l_id(lua_State *L) {
  lua_node *ln = check_joined(L);
  push_hex(L, pm_io_node_id(ln->io), PM_NODE_ID_LEN);
  return 1;
}

static int l_mesh(lua_State *L) {
  lua_node *ln = check_joined(L);
  lua_pushstring(L, pm_io_node_mesh(ln->io));
  return 1;
}

static int l_online(lua_State *L) {
  lua_node *ln = check_node(L);
  lua_pushboolean(L, ln->io && pm_io_node_online(ln->io));
  return 1;
}

static int l_port(lua_State *L) {
  lua_node *ln = check_joined(L);
  lua_pushinteger(L, pm_io_node_port(ln->io));
  return 1;
}

static int l_stats(lua_State *L) {
  lua_node *ln = check_joined(L);
  pm_node_stats s;
  pm_io_node_stats(ln->io, &s);
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, s.neighbors);
  lua_setfield(L, -2, "neighbors");
  lua_pushinteger(L, s.links);
  lua_setfield(L, -2, "links");
  lua_pushinteger(L, (lua_Integer)s.delivered);
  lua_setfield(L, -2, "delivered");
  lua_pushinteger(L, (lua_Integer)s.duplicates);
  lua_setfield(L, -2, "duplicates");
  lua_pushinteger(L, (lua_Integer)s.invalid);
  lua_setfield(L, -2, "invalid");
  lua_pushinteger(L, s.members);
  lua_setfield(L, -2, "members");
  return 1;
}

static int l_tostring(lua_State *L) {
  lua_node *ln = check_node(L);
  if (ln->io)
    lua_pushfstring(L, "peermesh.node (%s)", pm_io_node_mesh(ln->io));
  else
    lua_pushliteral(L, "peermesh.node (left)");
  return 1;
}

static int l_encode(lua_State *L) {
  luaL_checkany(L, 1);
  if (!pm_json_encode(L, 1))
    return push_fail(L, PM_ERR_INVAL, lua_tostring(L, -1));
  return 1;
}

static int l_decode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  if (!pm_json_decode(L, s, n))
    return push_fail(L, PM_ERR_MALFORMED, lua_tostring(L, -1));
  return 1;
}

static const luaL_Reg node_methods[] = {
    {"on", l_on},         {"filter", l_filter}, {"send", l_send},
    {"leave", l_leave},   {"id", l_id},         {"mesh", l_mesh},
    {"online", l_online}, {"port", l_port},     {"stats", l_stats},
    {NULL, NULL}};

static const luaL_Reg node_meta[] = {{"__gc", l_leave},
                                     {"__close", l_leave},
                                     {"__tostring", l_tostring},
                                     {NULL, NULL}};

static const luaL_Reg module_funcs[] = {
    {"join", l_join}, {"encode", l_encode}, {"decode", l_decode}, {NULL, NULL}};

static int open_module(lua_State *L) {
  luaL_newlib(L, module_funcs);
  pm_json_push_null(L);
  lua_setfield(L, -2, "null");
  lua_pushstring(L, PM_VERSION);
  lua_setfield(L, -2, "version");
  lua_getfield(L, LUA_REGISTRYINDEX, OPTS_KEY);
  lua_setfield(L, -2, "options");
  return 1;
}

void pm_lua_peermesh_install(lua_State *L, pm_host *host,
                             const pm_lua_options *opts) {
  lua_pushlightuserdata(L, host);
  lua_setfield(L, LUA_REGISTRYINDEX, HOST_KEY);

  const pm_host_options *ho = pm_host_options_get(host);
  lua_newtable(L);
  lua_pushstring(L, ho->mesh ? ho->mesh : "lobby");
  lua_setfield(L, -2, "mesh");
  if (opts && opts->nick) {
    lua_pushstring(L, opts->nick);
    lua_setfield(L, -2, "nick");
  }
  lua_pushstring(L, ho->data_dir);
  lua_setfield(L, -2, "data_dir");
  lua_setfield(L, LUA_REGISTRYINDEX, OPTS_KEY);

  luaL_newmetatable(L, NODE_MT);
  luaL_setfuncs(L, node_meta, 0);
  luaL_newlib(L, node_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  luaL_requiref(L, "peermesh", open_module, 0);
  lua_pop(L, 1);
}
