// otp-table: the :ets.i() of otpd. Lists the node's shared-memory tables,
// shows one's info, gets, puts, deletes and dumps entries.
//
// Exit status: 0 success, 1 a negative answer (no such key or table, access
// refused), 100 usage error, 111 system error.

#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <otpd/core/main.hpp>
#include <otpd/shm_table/persistent_term.hpp>
#include <otpd/shm_table/table.hpp>

namespace st = otpd::shm_table;
using otpd::core::errc;

namespace {

// Bytes as text: printable ASCII as is, the rest as \xNN (and \\).
std::string printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  return out;
}

int fail(const std::string& what, const otpd::core::failure& f) {
  std::fprintf(stderr, "otp-table: unable to %s: %s\n", what.c_str(), f.message().c_str());
  const std::error_code& ec = f.code;
  bool negative = ec == errc::not_found || ec == errc::access_denied || ec == errc::table_full ||
                  ec == errc::too_large || ec == errc::busy || ec == errc::already_exists ||
                  ec == errc::corrupt;
  return negative ? 1 : 111;
}

std::string ttl_text(const std::optional<std::int64_t>& ms) {
  return ms ? fmt::format("{}ms", *ms) : std::string("-");
}

}  // namespace

int run(int argc, char** argv) {
  CLI::App app{"otp-table: the node's shared-memory tables"};
  app.require_subcommand(1);
  std::string node = st::default_node();
  app.add_option("--node", node, "node name (default $OTPD_NODE or 'default')");
  std::string name;
  std::string key;
  std::string value;
  long long ttl_ms = 0;
  bool raw = false;

  auto* list = app.add_subcommand("list", "list the node's tables");
  auto* info = app.add_subcommand("info", "type, size, memory, owner, access of a table");
  info->add_option("table", name)->required();
  auto* get = app.add_subcommand("get", "print the value of a key");
  get->add_option("table", name)->required();
  get->add_option("key", key)->required();
  get->add_flag("--raw", raw, "print the bytes as they are");
  auto* put = app.add_subcommand("put", "insert or replace an entry");
  put->add_option("table", name)->required();
  put->add_option("key", key)->required();
  put->add_option("value", value)->required();
  put->add_option("--ttl-ms", ttl_ms, "expire after this many milliseconds");
  auto* del = app.add_subcommand("delete", "remove a key");
  del->add_option("table", name)->required();
  del->add_option("key", key)->required();
  auto* dump = app.add_subcommand("dump", "print every live entry: key, value, TTL left");
  dump->add_option("table", name)->required();
  std::string type = "set";
  std::string access = "public";
  std::uint32_t max_entries = 1024;
  std::uint32_t max_item = 256;
  auto* create = app.add_subcommand("create", "create a table");
  create->add_option("table", name)->required();
  create->add_option("--type", type, "set | ordered_set");
  create->add_option("--access", access, "public | protected");
  create->add_option("--max-entries", max_entries);
  create->add_option("--max-item-bytes", max_item);
  auto* remove = app.add_subcommand("remove", "remove a table (orderly)");
  remove->add_option("table", name)->required();
  auto* cleanup = app.add_subcommand("cleanup", "remove the node's stale segments");
  auto* terms = app.add_subcommand("terms", "print the node's persistent_term store");
  auto* verify = app.add_subcommand("verify", "check every invariant of a table");
  verify->add_option("table", name)->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 100;
  }
  if (!st::valid_node_name(node) || (!name.empty() && !st::valid_table_name(name))) {
    std::fprintf(stderr, "otp-table: bad node or table name\n");
    return 100;
  }

  if (*list) {
    std::printf("%-24s %-12s %-9s %10s %12s %8s %s\n", "table", "type", "access", "size", "memory",
                "owner", "policy");
    for (const auto& n : st::list_tables(node)) {
      auto t = st::table::open(node, n);
      if (!t) {
        std::printf("%-24s (unreadable: %s)\n", n.c_str(), t.message().c_str());
        continue;
      }
      auto i = t->info();
      std::printf("%-24s %-12s %-9s %10llu %12llu %8d%s %s\n", n.c_str(), st::to_string(i.type),
                  st::to_string(i.access), static_cast<unsigned long long>(i.size),
                  static_cast<unsigned long long>(i.memory), i.owner, i.owner_alive ? "" : "(dead)",
                  st::to_string(i.policy));
    }
    return 0;
  }
  if (*terms) {
    auto pt = st::persistent_term::open(node);
    if (!pt) {
      return fail("open the persistent_term store", pt.fail());
    }
    for (const auto& [k, v] : pt->all()) {
      std::printf("%s\t%s\n", printable(k).c_str(), printable(v).c_str());
    }
    return 0;
  }
  if (*cleanup) {
    for (const auto& n : st::remove_stale(node)) {
      std::printf("removed %s\n", n.c_str());
    }
    return 0;
  }
  if (*create) {
    st::table_options o;
    auto tt = st::table_type_from(type);
    auto ta = st::access_mode_from(access);
    if (!tt || !ta) {
      std::fprintf(stderr, "otp-table: bad --type or --access\n");
      return 100;
    }
    o.type = *tt;
    o.access = *ta;
    o.max_entries = max_entries;
    o.max_item_bytes = max_item;
    auto t = st::table::create(node, name, o);
    return t ? 0 : fail("create table " + name, t.fail());
  }
  if (*remove) {
    auto r = st::table::remove(node, name);
    return r ? 0 : fail("remove table " + name, r.fail());
  }

  auto t = st::table::open(node, name);
  if (!t) {
    return fail("open table " + name + " of node " + node, t.fail());
  }
  if (*info) {
    auto i = t->info();
    std::printf(
        "table: %s\nnode: %s\ntype: %s\naccess: %s\nsize: %llu\npayload_bytes: %llu\n"
        "memory: %llu\nmax_entries: %u\nmax_bytes: %llu\nmax_item_bytes: %u\n"
        "eviction: %s\nstripes: %u\nowner: %d (%s)\nrepairs: %llu\n",
        i.name.c_str(), i.node.c_str(), st::to_string(i.type), st::to_string(i.access),
        static_cast<unsigned long long>(i.size), static_cast<unsigned long long>(i.payload_bytes),
        static_cast<unsigned long long>(i.memory), i.max_entries,
        static_cast<unsigned long long>(i.max_bytes), i.max_item_bytes, st::to_string(i.policy),
        i.stripes, i.owner, i.owner_alive ? "alive" : "dead",
        static_cast<unsigned long long>(i.repairs));
    return 0;
  }
  if (*get) {
    auto v = t->lookup(key);
    if (!v) {
      std::fprintf(stderr, "otp-table: no key %s in %s\n", printable(key).c_str(), name.c_str());
      return 1;
    }
    if (raw) {
      std::fwrite(v->data(), 1, v->size(), stdout);
    } else {
      std::printf("%s\n", printable(*v).c_str());
    }
    return 0;
  }
  if (*put) {
    auto r = t->insert(key, value, std::chrono::milliseconds(ttl_ms));
    return r ? 0 : fail("put " + printable(key), r.fail());
  }
  if (*del) {
    auto r = t->erase(key);
    if (!r) {
      return fail("delete " + printable(key), r.fail());
    }
    return *r ? 0 : 1;
  }
  if (*dump) {
    t->fold([](const st::entry& e) {
      std::printf("%s\t%s\t%s\n", printable(e.key).c_str(), printable(e.value).c_str(),
                  ttl_text(e.ttl_left_ms).c_str());
    });
    return 0;
  }
  if (*verify) {
    std::string why;
    auto r = t->verify(&why);
    if (!r) {
      std::printf("%s: %s\n", name.c_str(), why.c_str());
      return 1;
    }
    std::printf("%s: ok\n", name.c_str());
    return 0;
  }
  return 100;
}

int main(int argc, char** argv) {
  return otpd::core::guarded_main(argc, argv, run);
}
