// otp-table: the :ets.i() of otpd. Lists the node's shared-memory tables,
// shows one's info, gets, puts, deletes and dumps entries.
//
// Exit status: 0 success, 1 a negative answer (no such key or table, access
// refused), 100 usage error, 111 system error.

#include <cstdio>
#include <string>

#include <fmt/format.h>

#include <otpd/core/cli.hpp>
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
  otpd::core::cli::app app{"otp-table: the node's shared-memory tables"};
  app.require_subcommand(1);
  std::string node = st::default_node();
  app.add("--node", node, "node name (default $OTPD_NODE or 'default')");
  std::string name;
  std::string key;
  std::string value;
  long long ttl_ms = 0;
  bool raw = false;

  auto list = app.subcommand("list", "list the node's tables");
  auto info = app.subcommand("info", "type, size, memory, owner, access of a table");
  info.add("table", name).required();
  auto get = app.subcommand("get", "print the value of a key");
  get.add("table", name).required();
  get.add("key", key).required();
  get.flag("--raw", raw, "print the bytes as they are");
  auto put = app.subcommand("put", "insert or replace an entry");
  put.add("table", name).required();
  put.add("key", key).required();
  put.add("value", value).required();
  put.add("--ttl-ms", ttl_ms, "expire after this many milliseconds");
  auto del = app.subcommand("delete", "remove a key");
  del.add("table", name).required();
  del.add("key", key).required();
  auto dump = app.subcommand("dump", "print every live entry: key, value, TTL left");
  dump.add("table", name).required();
  std::string type = "set";
  std::string access = "public";
  std::uint32_t max_entries = 1024;
  std::uint32_t max_item = 256;
  auto create = app.subcommand("create", "create a table");
  create.add("table", name).required();
  create.add("--type", type, "set | ordered_set");
  create.add("--access", access, "public | protected");
  create.add("--max-entries", max_entries);
  create.add("--max-item-bytes", max_item);
  auto remove = app.subcommand("remove", "remove a table (orderly)");
  remove.add("table", name).required();
  auto cleanup = app.subcommand("cleanup", "remove the node's stale segments");
  auto terms = app.subcommand("terms", "print the node's persistent_term store");
  auto verify = app.subcommand("verify", "check every invariant of a table");
  verify.add("table", name).required();

  if (auto rc = app.parse(argc, argv)) {
    return *rc == 0 ? 0 : 100;
  }
  if (!st::valid_node_name(node) || (!name.empty() && !st::valid_table_name(name))) {
    std::fprintf(stderr, "otp-table: bad node or table name\n");
    return 100;
  }

  if (list.parsed()) {
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
  if (terms.parsed()) {
    auto pt = st::persistent_term::open(node);
    if (!pt) {
      return fail("open the persistent_term store", pt.fail());
    }
    for (const auto& [k, v] : pt->all()) {
      std::printf("%s\t%s\n", printable(k).c_str(), printable(v).c_str());
    }
    return 0;
  }
  if (cleanup.parsed()) {
    for (const auto& n : st::remove_stale(node)) {
      std::printf("removed %s\n", n.c_str());
    }
    return 0;
  }
  if (create.parsed()) {
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
  if (remove.parsed()) {
    auto r = st::table::remove(node, name);
    return r ? 0 : fail("remove table " + name, r.fail());
  }

  auto t = st::table::open(node, name);
  if (!t) {
    return fail("open table " + name + " of node " + node, t.fail());
  }
  if (info.parsed()) {
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
  if (get.parsed()) {
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
  if (put.parsed()) {
    auto r = t->insert(key, value, std::chrono::milliseconds(ttl_ms));
    return r ? 0 : fail("put " + printable(key), r.fail());
  }
  if (del.parsed()) {
    auto r = t->erase(key);
    if (!r) {
      return fail("delete " + printable(key), r.fail());
    }
    return *r ? 0 : 1;
  }
  if (dump.parsed()) {
    t->fold([](const st::entry& e) {
      std::printf("%s\t%s\t%s\n", printable(e.key).c_str(), printable(e.value).c_str(),
                  ttl_text(e.ttl_left_ms).c_str());
    });
    return 0;
  }
  if (verify.parsed()) {
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
