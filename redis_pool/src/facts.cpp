#include <charconv>
#include <cstdlib>

#include <fmt/format.h>

#include <otpd/redis_pool/facts.hpp>
#include <otpd/shm_table/table.hpp>

namespace otpd::redis_pool {

using core::errc;

namespace {

// Keys in the store are bounded (64 bytes) and so is the member count.
constexpr unsigned max_members = 60;

template <class T>
bool parse_number(std::string_view s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

std::string default_node() {
  return shm_table::default_node();
}

std::string member_name(std::string_view pool, unsigned index) {
  return fmt::format("{}.{}", pool, index);
}

bool valid_pool_name(std::string_view pool) noexcept {
  if (pool.empty() || pool.size() > 40) {
    return false;
  }
  for (char c : pool) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-';
    if (!ok) {
      return false;
    }
  }
  return true;
}

core::Result<void> publish_member(shm_table::persistent_term& store, std::string_view pool,
                                  unsigned index, unsigned size, const member& m) {
  if (!valid_pool_name(pool) || size == 0 || size > max_members || index >= size) {
    return errc::invalid_argument;
  }
  if (auto r = store.put(fmt::format("pool.{}.size", pool), std::to_string(size)); !r) {
    return r;
  }
  return store.put(fmt::format("pool.{}.{}", pool, index), fmt::format("{} {}", m.name, m.pid));
}

core::Result<pool_facts> read_facts(const shm_table::persistent_term& store,
                                    std::string_view pool) {
  pool_facts f;
  // The generation first: a put racing with these reads shows up as a newer
  // generation at the next check, so the caller re-reads.
  f.generation = store.generation();
  std::string v;
  if (!store.get_into(fmt::format("pool.{}.size", pool), v) || !parse_number(v, f.size) ||
      f.size == 0 || f.size > max_members) {
    return errc::not_found;
  }
  f.members.resize(f.size);
  for (unsigned i = 0; i < f.size; ++i) {
    if (!store.get_into(fmt::format("pool.{}.{}", pool, i), v)) {
      continue;
    }
    auto sp = v.rfind(' ');
    if (sp == std::string::npos) {
      continue;
    }
    f.members[i].name = v.substr(0, sp);
    if (!parse_number(std::string_view(v).substr(sp + 1), f.members[i].pid)) {
      f.members[i].pid = 0;
    }
  }
  return f;
}

void erase_facts(shm_table::persistent_term& store, std::string_view pool) {
  std::string prefix = fmt::format("pool.{}.", pool);
  for (const auto& [k, v] : store.all()) {
    if (k.rfind(prefix, 0) == 0) {
      (void)store.erase(k);
    }
  }
}

}  // namespace otpd::redis_pool
