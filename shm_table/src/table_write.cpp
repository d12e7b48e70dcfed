// The writes: each one a transaction on one stripe (journal.hpp), taking and
// freeing slots of its pool (slot_pool.hpp). Deletes over the whole table
// commit entry by entry, stripe by stripe.

#include <chrono>
#include <functional>
#include <vector>

#include "index.hpp"
#include "journal.hpp"
#include "layout.hpp"
#include "slot_pool.hpp"
#include "table_impl.hpp"

#include <otpd/core/clock.hpp>
#include <otpd/shm_table/table.hpp>

namespace otpd::shm_table {

using core::errc;
using namespace detail;

namespace {

std::int64_t expiry_for(std::chrono::milliseconds ttl) {
  if (ttl.count() <= 0) {
    return 0;
  }
  return core::monotonic_ns() + static_cast<std::int64_t>(ttl.count()) * 1'000'000;
}

core::Result<void> check_write(const table::impl& t, std::string_view key, std::string_view value) {
  if (!t.writable()) {
    return errc::access_denied;
  }
  if (key.empty() || key.size() > 0xFFFF || key.size() + value.size() > t.max_item) {
    return key.empty() ? errc::invalid_argument : errc::too_large;
  }
  return {};
}

// insert / insert_new: 1 inserted or replaced, 0 present (insert_new).
core::Result<bool> put(const table::impl& t, std::string_view key, std::string_view value,
                       std::chrono::milliseconds ttl, bool only_new) {
  if (auto c = check_write(t, key, value); !c) {
    return c.error();
  }
  std::uint64_t h = t.hash(key);
  std::uint32_t s = t.stripe_of(h);
  std::int64_t expire = expiry_for(ttl);
  writer w(t, s);
  if (!w.ok()) {
    return w.error();
  }
  std::int64_t now = core::monotonic_ns();
  std::uint32_t idx = find(t, s, h, key);
  if (idx != nil) {
    slot_hdr* sl = t.slot(s, idx);
    if (only_new && !table::impl::expired(sl, now)) {
      return false;
    }
    std::uint32_t old = ld(sl->vlen);
    std::uint64_t grow = value.size() > old ? value.size() - old : 0;
    if (grow != 0) {
      if (room r = make_room(t, w, s, false, grow, now, idx); r != room::ok) {
        if (r == room::full) {
          w.rollback();
          return errc::table_full;
        }
        return w.corrupt();
      }
    }
    if (!overwrite(t, w, s, idx, value, expire)) {
      return w.corrupt();
    }
  } else {
    if (room r = make_room(t, w, s, true, key.size() + value.size(), now, nil); r != room::ok) {
      if (r == room::full) {
        w.rollback();
        return errc::table_full;
      }
      return w.corrupt();
    }
    if (!link_new(t, w, s, h, key, value, expire)) {
      return w.corrupt();
    }
  }
  if (t.damaged()) {
    return w.corrupt();
  }
  w.commit();
  return true;
}

}  // namespace

Result<void> table::insert(std::string_view key, std::string_view value,
                           std::chrono::milliseconds ttl) {
  auto r = put(*impl_, key, value, ttl, false);
  if (!r) {
    return r.error();
  }
  return {};
}

Result<bool> table::insert_new(std::string_view key, std::string_view value,
                               std::chrono::milliseconds ttl) {
  return put(*impl_, key, value, ttl, true);
}

Result<std::optional<std::string>> table::take(std::string_view key) {
  const impl& t = *impl_;
  if (auto c = check_write(t, key, {}); !c) {
    return c.error();
  }
  std::uint64_t h = t.hash(key);
  std::uint32_t s = t.stripe_of(h);
  writer w(t, s);
  if (!w.ok()) {
    return w.error();
  }
  std::uint32_t idx = find(t, s, h, key);
  if (idx == nil) {
    return std::optional<std::string>{};
  }
  slot_hdr* sl = t.slot(s, idx);
  std::optional<std::string> out;
  if (!impl::expired(sl, core::monotonic_ns())) {
    out = std::string(t.value_of(sl));
  }
  if (!free_slot(t, w, s, idx) || t.damaged()) {
    return w.corrupt();
  }
  w.commit();
  return out;
}

Result<bool> table::erase(std::string_view key) {
  auto r = take(key);
  if (!r) {
    return r.error();
  }
  return r->has_value();
}

Result<std::int64_t> table::update_counter(std::string_view key, std::int64_t incr,
                                           std::int64_t initial, std::chrono::milliseconds ttl) {
  const impl& t = *impl_;
  if (auto c = check_write(t, key, std::string_view("01234567", 8)); !c) {
    return c.error();
  }
  std::uint64_t h = t.hash(key);
  std::uint32_t s = t.stripe_of(h);
  writer w(t, s);
  if (!w.ok()) {
    return w.error();
  }
  std::int64_t now = core::monotonic_ns();
  std::uint32_t idx = find(t, s, h, key);
  std::int64_t value = 0;
  char buf[8];
  auto encode = [&](std::int64_t v) {
    auto u = static_cast<std::uint64_t>(v);
    for (int i = 0; i < 8; ++i) {
      buf[i] = static_cast<char>((u >> (8 * i)) & 0xff);
    }
  };
  if (idx != nil && !impl::expired(t.slot(s, idx), now)) {
    slot_hdr* sl = t.slot(s, idx);
    std::string_view v = t.value_of(sl);
    if (v.size() != 8) {
      return errc::invalid_argument;
    }
    std::uint64_t u = 0;
    for (int i = 7; i >= 0; --i) {
      u = (u << 8) | static_cast<unsigned char>(v[static_cast<std::size_t>(i)]);
    }
    // Wraps like a machine integer rather than overflowing (UB).
    value = static_cast<std::int64_t>(u + static_cast<std::uint64_t>(incr));
    encode(value);
    if (!overwrite(t, w, s, idx, std::string_view(buf, 8), ld(sl->expire_ns))) {
      return w.corrupt();
    }
  } else {
    value = static_cast<std::int64_t>(static_cast<std::uint64_t>(initial) +
                                      static_cast<std::uint64_t>(incr));
    encode(value);
    std::int64_t expire = expiry_for(ttl);
    if (idx != nil) {
      if (!overwrite(t, w, s, idx, std::string_view(buf, 8), expire)) {
        return w.corrupt();
      }
    } else {
      if (room r = make_room(t, w, s, true, key.size() + 8, now, nil); r != room::ok) {
        if (r == room::full) {
          w.rollback();
          return errc::table_full;
        }
        return w.corrupt();
      }
      if (!link_new(t, w, s, h, key, std::string_view(buf, 8), expire)) {
        return w.corrupt();
      }
    }
  }
  if (t.damaged()) {
    return w.corrupt();
  }
  w.commit();
  return value;
}

namespace {

// Live slot indices of stripe s in table order. Caller holds the lock.
std::vector<std::uint32_t> slots_in_order(const table::impl& t, std::uint32_t s) {
  std::vector<std::uint32_t> out;
  if (t.type == table_type::ordered_set) {
    std::uint32_t x = ld(t.stripe(s).head_fwd[0]);
    while (x != nil && x < t.spp && out.size() <= t.spp) {
      out.push_back(x);
      x = ld(t.fwd(s, x)[0]);
    }
  } else {
    for (std::uint32_t i = 0; i < t.spp; ++i) {
      if (t.slot(s, i)->live != 0) {
        out.push_back(i);
      }
    }
  }
  return out;
}

// Deletes, one committed step at a time, every entry of which match says so.
// The caller checked the access.
core::Result<std::size_t> delete_each(const table::impl& t,
                                      const std::function<bool(slot_hdr*, std::int64_t)>& match) {
  std::size_t n = 0;
  for (std::uint32_t s = 0; s < t.stripes; ++s) {
    writer w(t, s);
    if (!w.ok()) {
      return w.error();
    }
    std::int64_t now = core::monotonic_ns();
    for (std::uint32_t idx : slots_in_order(t, s)) {
      if (match(t.slot(s, idx), now)) {
        if (!free_slot(t, w, s, idx) || t.damaged()) {
          return w.corrupt();
        }
        w.commit();
        ++n;
      }
    }
  }
  return n;
}

core::Result<std::size_t> delete_where(const table::impl& t,
                                       const std::function<bool(slot_hdr*, std::int64_t)>& match) {
  if (!t.writable()) {
    return errc::access_denied;
  }
  return delete_each(t, match);
}

}  // namespace

Result<std::size_t> table::select_delete(const predicate& pred) {
  const impl& t = *impl_;
  return delete_where(t, [&](slot_hdr* sl, std::int64_t now) {
    return !impl::expired(sl, now) && pred(t.key_of(sl), t.value_of(sl));
  });
}

Result<std::size_t> table::sweep() {
  // The owner sweeps even a protected table; so may anyone (it only removes
  // what is already invisible).
  return delete_each(*impl_, [](slot_hdr* sl, std::int64_t now) { return impl::expired(sl, now); });
}

Result<void> table::clear() {
  auto r = delete_where(*impl_, [](slot_hdr*, std::int64_t) { return true; });
  if (!r) {
    return r.error();
  }
  return {};
}

}  // namespace otpd::shm_table
