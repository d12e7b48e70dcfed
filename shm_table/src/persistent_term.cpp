// persistent_term: two buffers and a generation counter (the pt_area of
// layout.hpp). The current image is buf[gen & 1]; a writer (under the robust
// mutex of robust_lock.hpp) rebuilds the other buffer from the current one
// plus its change, inside that buffer's own seqlock, then publishes it by
// bumping gen. A writer killed anywhere has changed only the idle buffer, so
// there is nothing to repair (no_repair): the next writer rebuilds it.
// Readers load gen, read the current buffer and check its seqlock (a reader
// stalled across two publications sees the counter move and retries).

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "layout.hpp"
#include "robust_lock.hpp"
#include "segment.hpp"
#include <fmt/format.h>

#include <otpd/core/clock.hpp>
#include <otpd/core/log.hpp>
#include <otpd/shm_table/persistent_term.hpp>
#include <otpd/shm_table/table.hpp>

namespace otpd::shm_table {

using core::errc;
using detail::pt_area;
using detail::pt_buf;
using detail::pt_entry;

namespace {

std::string pt_segment(std::string_view node, std::string_view name) {
  return fmt::format("otpd-pt.{}.{}", node, name);
}

std::string_view key_of(const pt_entry& e) {
  return {e.key, std::min<std::size_t>(e.klen, persistent_term::max_key_bytes)};
}

}  // namespace

// Every count and length read from the area is checked against its bound
// before use (any process of the node can write random bytes there): a
// reader clamps and reports errc::corrupt through get_checked(), a writer
// refuses to publish from a damaged image (errc::corrupt), and waits are
// bounded (wait_ms: a lock word of garbage, a buffer whose counter stays odd).
struct persistent_term::impl {
  std::unique_ptr<detail::segment> seg;
  pt_area* a = nullptr;
  int wait_ms = 2000;

  // Whether an entry's lengths are within their bounds.
  static bool entry_ok(const pt_entry& e) {
    return __atomic_load_n(&e.klen, __ATOMIC_RELAXED) <= max_key_bytes &&
           __atomic_load_n(&e.vlen, __ATOMIC_RELAXED) <= max_value_bytes;
  }

  // fn reads a stable image of the current buffer. errc::corrupt when the
  // segment was shrunk or the buffer's counter stays odd past wait_ms (a
  // writer only ever writes the idle buffer, so the current one's counter is
  // odd for an instant at most).
  template <class Fn>
  [[nodiscard]] errc read(Fn&& fn) const {
    std::int64_t until = 0;
    for (std::uint32_t attempt = 0;; ++attempt) {
      if (seg->damaged()) {
        return errc::corrupt;
      }
      std::uint64_t g = __atomic_load_n(&a->gen, __ATOMIC_ACQUIRE);
      const pt_buf& b = a->buf[g & 1];
      std::uint64_t q1 = detail::seq_read_begin(b.seq);
      if ((q1 & 1) == 0) {
        fn(b);
        if (detail::seq_read_valid(b.seq, q1)) {
          return seg->damaged() ? errc::corrupt : errc::ok;
        }
      }
      if (attempt >= 64) {
        std::int64_t now = core::monotonic_ns();
        if (until == 0) {
          until = now + static_cast<std::int64_t>(wait_ms) * 1'000'000;
        } else if (now >= until) {
          return (q1 & 1) != 0 ? errc::corrupt : errc::busy;
        }
        ::sched_yield();
      }
    }
  }

  // change edits the idle buffer (a copy of the current one); false = abort.
  template <class Fn>
  core::Result<void> write(Fn&& change) {
    if (seg->damaged()) {
      return errc::corrupt;
    }
    // A dead writer touched only the idle buffer, which is rebuilt below.
    if (int rc = detail::robust_lock(a->mutex, detail::no_repair{}, wait_ms); rc != 0) {
      return rc == detail::lock_busy ? errc::busy : errc::corrupt;
    }
    std::uint64_t g = __atomic_load_n(&a->gen, __ATOMIC_ACQUIRE);
    pt_buf& cur = a->buf[g & 1];
    pt_buf& nxt = a->buf[(g + 1) & 1];
    core::Result<void> r;
    // The current image, checked as it is copied: a count or a length out of
    // bounds means the area is damaged, and nothing is published from it.
    std::uint32_t n = __atomic_load_n(&cur.count, __ATOMIC_RELAXED);
    detail::seq_write_begin(nxt.seq);  // odd even if a dead writer left it odd
    if (n > max_terms) {
      r = errc::corrupt;
    } else {
      nxt.count = n;
      for (std::uint32_t i = 0; i < n && r; ++i) {
        pt_entry& e = nxt.e[i];
        std::memcpy(&e, &cur.e[i], offsetof(pt_entry, value));
        if (e.klen > max_key_bytes || e.vlen > max_value_bytes) {
          r = errc::corrupt;
          break;
        }
        std::memcpy(e.value, cur.e[i].value, e.vlen);
      }
      if (r) {
        r = change(nxt);
      }
    }
    detail::seq_write_end(nxt.seq);
    if (r && seg->damaged()) {
      r = errc::corrupt;
    }
    if (r) {
      __atomic_store_n(&a->gen, g + 1, __ATOMIC_RELEASE);
    }
    ::pthread_mutex_unlock(&a->mutex);
    return r;
  }
};

Result<void> persistent_term::bind(impl& p) {
  if (p.seg->size() != sizeof(pt_area)) {
    return {errc::corrupt, fmt::format("segment {}: {} bytes, a persistent_term area has {}: "
                                       "refused",
                                       p.seg->name(), p.seg->size(), sizeof(pt_area))};
  }
  p.a = reinterpret_cast<pt_area*>(p.seg->base());
  if (!detail::wait_ready(&p.a->magic, detail::pt_magic, 2000)) {
    if (__atomic_load_n(&p.a->magic, __ATOMIC_ACQUIRE) != 0) {
      return {errc::corrupt, fmt::format("segment {}: bad magic: refused", p.seg->name())};
    }
    return {errc::busy,
            fmt::format("segment {}: not published by its creator within 2000 ms", p.seg->name())};
  }
  return {};
}

persistent_term::persistent_term(std::unique_ptr<impl> p) noexcept : impl_(std::move(p)) {}
persistent_term::persistent_term(persistent_term&&) noexcept = default;
persistent_term& persistent_term::operator=(persistent_term&&) noexcept = default;
persistent_term::~persistent_term() = default;

Result<persistent_term> persistent_term::open(std::string_view node, std::string_view name) {
  if (!valid_node_name(node) || !valid_table_name(name)) {
    return errc::invalid_argument;
  }
  std::string seg_name = pt_segment(node, name);
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto p = std::make_unique<impl>();
    auto created = detail::create_segment(seg_name, sizeof(pt_area));
    if (created) {
      p->seg = std::move(*created);
      p->a = reinterpret_cast<pt_area*>(p->seg->base());
      detail::init_robust_mutex(&p->a->mutex);
      p->a->size = sizeof(pt_area);
      __atomic_store_n(&p->a->magic, detail::pt_magic, __ATOMIC_RELEASE);
      return persistent_term(std::move(p));
    }
    if (created.error() != errc::already_exists) {
      return created.fail();
    }
    auto opened = detail::open_segment(seg_name);
    if (!opened) {
      if (opened.error() == errc::not_found || opened.error() == errc::busy) {
        continue;
      }
      return opened.fail();
    }
    p->seg = std::move(*opened);
    if (auto b = bind(*p); !b) {
      return b.fail();
    }
    return persistent_term(std::move(p));
  }
  return errc::busy;
}

Result<void> persistent_term::remove(std::string_view node, std::string_view name) {
  return detail::remove_segment(pt_segment(node, name));
}

Result<void> persistent_term::put(std::string_view key, std::string_view value) {
  if (key.empty() || key.size() > max_key_bytes || value.size() > max_value_bytes) {
    return key.empty() ? errc::invalid_argument : errc::too_large;
  }
  return impl_->write([&](pt_buf& b) -> Result<void> {
    // Counts and lengths read once and clamped: another process may be
    // writing into this buffer too.
    std::uint32_t n = std::min<std::uint32_t>(b.count, max_terms);
    std::uint32_t i = 0;
    while (i < n && key_of(b.e[i]) != key) {
      ++i;
    }
    if (i == n) {
      if (n >= max_terms) {
        return errc::table_full;
      }
      b.count = n + 1;
    }
    pt_entry& e = b.e[i];
    e.klen = static_cast<std::uint32_t>(key.size());
    std::memcpy(e.key, key.data(), key.size());
    e.vlen = static_cast<std::uint32_t>(value.size());
    if (!value.empty()) {
      std::memcpy(e.value, value.data(), value.size());
    }
    return {};
  });
}

Result<bool> persistent_term::erase(std::string_view key) {
  bool found = false;
  auto r = impl_->write([&](pt_buf& b) -> Result<void> {
    std::uint32_t n = std::min<std::uint32_t>(b.count, max_terms);
    for (std::uint32_t i = 0; i < n; ++i) {
      if (key_of(b.e[i]) == key) {
        found = true;
        if (i + 1 != n) {
          std::memcpy(&b.e[i], &b.e[n - 1], sizeof(pt_entry));
        }
        b.count = n - 1;
        return {};
      }
    }
    return errc::not_found;  // nothing to publish
  });
  if (!r && r.error() != errc::not_found) {
    return r.error();
  }
  return found;
}

Result<bool> persistent_term::get_checked(std::string_view key, std::string& out) const {
  bool found = false;
  bool bad = false;
  errc e = impl_->read([&](const pt_buf& b) {
    found = false;
    std::uint32_t count = __atomic_load_n(&b.count, __ATOMIC_RELAXED);
    bad = count > max_terms;
    std::uint32_t n = std::min<std::uint32_t>(count, max_terms);
    for (std::uint32_t i = 0; i < n; ++i) {
      const pt_entry& t = b.e[i];
      std::uint32_t kl =
          std::min<std::uint32_t>(__atomic_load_n(&t.klen, __ATOMIC_RELAXED), max_key_bytes);
      if (!impl::entry_ok(t)) {
        bad = true;
      }
      if (kl == key.size() && std::memcmp(t.key, key.data(), kl) == 0) {
        out.assign(t.value, std::min<std::uint32_t>(__atomic_load_n(&t.vlen, __ATOMIC_RELAXED),
                                                    max_value_bytes));
        found = true;
        return;
      }
    }
  });
  if (e != errc::ok) {
    return e;
  }
  if (bad) {
    return errc::corrupt;
  }
  return found;
}

bool persistent_term::get_into(std::string_view key, std::string& out) const {
  auto r = get_checked(key, out);
  return r && *r;
}

Result<void> persistent_term::verify(std::string* problem) const {
  auto fail = [&](const std::string& why) -> Result<void> {
    if (problem != nullptr) {
      *problem = why;
    }
    return {errc::corrupt, fmt::format("persistent_term {}: {}", impl_->seg->name(), why)};
  };
  const pt_area& a = *impl_->a;
  if (__atomic_load_n(&a.magic, __ATOMIC_ACQUIRE) != detail::pt_magic) {
    return fail("bad magic");
  }
  std::string why;
  errc e = impl_->read([&](const pt_buf& b) {
    why.clear();
    std::uint32_t n = __atomic_load_n(&b.count, __ATOMIC_RELAXED);
    if (n > max_terms) {
      why = fmt::format("{} terms, at most {}", n, max_terms);
      return;
    }
    for (std::uint32_t i = 0; i < n; ++i) {
      const pt_entry& t = b.e[i];
      std::uint32_t kl = __atomic_load_n(&t.klen, __ATOMIC_RELAXED);
      std::uint32_t vl = __atomic_load_n(&t.vlen, __ATOMIC_RELAXED);
      if (kl == 0 || kl > max_key_bytes || vl > max_value_bytes) {
        why = fmt::format("term {} has lengths {}+{}", i, kl, vl);
        return;
      }
    }
  });
  if (e != errc::ok) {
    return fail(e == errc::busy ? "the current image stayed busy" : "damaged (shrunk or stuck)");
  }
  if (!why.empty()) {
    return fail(why);
  }
  return {};
}

std::optional<std::string> persistent_term::get(std::string_view key) const {
  std::string out;
  if (!get_into(key, out)) {
    return std::nullopt;
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> persistent_term::all() const {
  std::vector<std::pair<std::string, std::string>> out;
  errc e = impl_->read([&](const pt_buf& b) {
    out.clear();
    std::uint32_t n =
        std::min<std::uint32_t>(__atomic_load_n(&b.count, __ATOMIC_RELAXED), max_terms);
    for (std::uint32_t i = 0; i < n; ++i) {
      const pt_entry& e = b.e[i];
      out.emplace_back(
          std::string(e.key, std::min<std::uint32_t>(__atomic_load_n(&e.klen, __ATOMIC_RELAXED),
                                                     max_key_bytes)),
          std::string(e.value, std::min<std::uint32_t>(__atomic_load_n(&e.vlen, __ATOMIC_RELAXED),
                                                       max_value_bytes)));
    }
  });
  if (e != errc::ok) {
    out.clear();
  }
  return out;
}

void persistent_term::set_wait(std::chrono::milliseconds wait) noexcept {
  impl_->wait_ms = static_cast<int>(std::clamp<std::int64_t>(wait.count(), 1, 3'600'000));
}

std::uint64_t persistent_term::generation() const noexcept {
  return __atomic_load_n(&impl_->a->gen, __ATOMIC_ACQUIRE);
}

}  // namespace otpd::shm_table
