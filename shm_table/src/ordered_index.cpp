#include "ordered_index.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstring>

#include <otpd/core/clock.hpp>

namespace otpd::shm_table::detail {

namespace {

int random_level() {
  // xorshift, seeded per process (a forked child reseeds: pids differ).
  static thread_local std::uint64_t state = 0;
  static thread_local pid_t seeded_for = 0;
  if (seeded_for != ::getpid()) {
    seeded_for = ::getpid();
    state = mix64(static_cast<std::uint64_t>(core::monotonic_ns()) ^
                  (static_cast<std::uint64_t>(seeded_for) << 32)) |
            1;
  }
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  std::uint64_t r = state;
  int level = 1;
  while (level < max_level && (r & 3) == 0) {
    ++level;
    r >>= 2;
  }
  return level;
}

}  // namespace

int compare_keys(std::string_view a, std::string_view b) {
  std::size_t n = std::min(a.size(), b.size());
  int c = n == 0 ? 0 : std::memcmp(a.data(), b.data(), n);
  if (c != 0) {
    return c;
  }
  return a.size() < b.size() ? -1 : (a.size() > b.size() ? 1 : 0);
}

std::uint32_t find_ordered(const table::impl& t, std::string_view key, std::uint32_t* update) {
  stripe_hdr& sh = t.stripe(0);
  std::uint32_t level = std::min<std::uint32_t>(ld(sh.level), max_level);
  std::uint32_t x = head_node;
  std::uint64_t steps = 0;
  const std::uint64_t max_steps = static_cast<std::uint64_t>(t.spp) * max_level + max_level;
  for (int l = max_level - 1; l >= 0; --l) {
    if (static_cast<std::uint32_t>(l) < level) {
      while (steps++ < max_steps) {
        std::uint32_t nx = ld(t.fwd(0, x)[l]);
        if (nx >= t.spp || compare_keys(t.key_of(t.slot(0, nx)), key) >= 0) {
          break;
        }
        x = nx;
      }
    }
    if (update != nullptr) {
      update[l] = x;
    }
  }
  std::uint32_t c = ld(t.fwd(0, x)[0]);
  if (c < t.spp && compare_keys(t.key_of(t.slot(0, c)), key) == 0) {
    return c;
  }
  return nil;
}

bool skip_link(const table::impl& t, writer& w, std::uint32_t s, std::uint32_t idx,
               std::string_view key) {
  stripe_hdr& sh = t.stripe(s);
  if (std::uint32_t cur = ld(sh.level); cur == 0 || cur > max_level) {
    return false;
  }
  slot_hdr* sl = t.slot(s, idx);
  std::uint32_t update[max_level];
  find_ordered(t, key, update);
  auto level = static_cast<std::uint32_t>(random_level());
  st(sl->level, level);
  if (level > sh.level) {
    w.save_field(sh.level);
    st(sh.level, level);
  }
  std::uint32_t* xf = t.fwd(s, idx);
  for (std::uint32_t l = 0; l < max_level; ++l) {
    st(xf[l], nil);
  }
  for (std::uint32_t l = 0; l < level; ++l) {
    std::uint32_t* pf = t.fwd(s, update[l]);
    st(xf[l], pf[l]);
    w.save_field(pf[l]);
    st(pf[l], idx);
  }
  return true;
}

bool skip_unlink(const table::impl& t, writer& w, std::uint32_t s, std::uint32_t idx) {
  stripe_hdr& sh = t.stripe(s);
  std::uint32_t level = ld(sh.level);
  if (level == 0 || level > max_level) {
    return false;
  }
  slot_hdr* sl = t.slot(s, idx);
  std::uint32_t update[max_level];
  find_ordered(t, t.key_of(sl), update);
  std::uint32_t* xf = t.fwd(s, idx);
  for (std::uint32_t l = 0; l < sl->level && l < max_level; ++l) {
    std::uint32_t* pf = t.fwd(s, update[l]);
    if (pf[l] == idx) {
      w.save_field(pf[l]);
      st(pf[l], xf[l]);
    }
  }
  std::uint32_t top = level;
  while (top > 1 && ld(sh.head_fwd[top - 1]) == nil) {
    --top;
  }
  if (top != level) {
    w.save_field(sh.level);
    st(sh.level, top);
  }
  return true;
}

core::Result<std::optional<std::string>> ordered_last(const table::impl& t) {
  // The last live key: walk level 0 keeping the last unexpired one (expired
  // tail entries are skipped).
  std::optional<std::string> out;
  core::errc e = t.read_stripe(
      0,
      [&] {
        out.reset();
        std::int64_t now = core::monotonic_ns();
        std::uint32_t x = ld(t.stripe(0).head_fwd[0]);
        for (std::uint32_t steps = 0; x < t.spp && steps <= t.spp; ++steps) {
          slot_hdr* sl = t.slot(0, x);
          if (!table::impl::expired(sl, now)) {
            out = std::string(t.key_of(sl));
          }
          x = ld(t.fwd(0, x)[0]);
        }
      },
      4);
  if (e != core::errc::ok) {
    return e;
  }
  return out;
}

core::Result<std::optional<std::string>> ordered_next(const table::impl& t, std::string_view key) {
  std::optional<std::string> out;
  core::errc e = t.read_stripe(
      0,
      [&] {
        out.reset();
        std::int64_t now = core::monotonic_ns();
        std::uint32_t update[max_level];
        find_ordered(t, key, update);
        std::uint32_t x = ld(t.fwd(0, update[0])[0]);
        for (std::uint32_t steps = 0; x < t.spp && steps <= t.spp; ++steps) {
          slot_hdr* sl = t.slot(0, x);
          if (!table::impl::expired(sl, now) && compare_keys(t.key_of(sl), key) > 0) {
            out = std::string(t.key_of(sl));
            return;
          }
          x = ld(t.fwd(0, x)[0]);
        }
      },
      4);
  if (e != core::errc::ok) {
    return e;
  }
  return out;
}

core::Result<std::vector<entry>> ordered_range(const table::impl& t, std::string_view lo,
                                               std::string_view hi, std::size_t limit) {
  std::vector<entry> out;
  core::errc e = t.read_stripe(
      0,
      [&] {
        out.clear();
        std::int64_t now = core::monotonic_ns();
        std::uint32_t update[max_level];
        find_ordered(t, lo, update);
        std::uint32_t x = ld(t.fwd(0, update[0])[0]);
        for (std::uint32_t steps = 0; x < t.spp && steps <= t.spp && out.size() < limit; ++steps) {
          slot_hdr* sl = t.slot(0, x);
          std::string_view k = t.key_of(sl);
          if (!hi.empty() && compare_keys(k, hi) >= 0) {
            break;
          }
          if (!table::impl::expired(sl, now)) {
            out.push_back(t.copy_entry(sl, now));
          }
          x = ld(t.fwd(0, x)[0]);
        }
      },
      4);
  if (e != core::errc::ok) {
    return e;
  }
  return out;
}

}  // namespace otpd::shm_table::detail
