// persistent_term: two buffers and a generation counter (the pt_area of
// layout.hpp). The current image is buf[gen & 1]; a writer (under the robust
// mutex of robust_lock.hpp) rebuilds the other buffer from the current one
// plus its change, inside that buffer's own seqlock, then publishes it by
// bumping gen. A writer killed anywhere has changed only the idle buffer, so
// there is nothing to repair (no_repair): the next writer rebuilds it.
// Readers load gen, read the current buffer and check its seqlock (a reader
// stalled across two publications sees the counter move and retries).

#include <pthread.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "layout.hpp"
#include "robust_lock.hpp"
#include "segment.hpp"
#include <fmt/format.h>

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

}  // namespace

struct persistent_term::impl {
  std::unique_ptr<detail::segment> seg;
  pt_area* a = nullptr;

  template <class Fn>
  void read(Fn&& fn) const {
    for (;;) {
      std::uint64_t g = __atomic_load_n(&a->gen, __ATOMIC_ACQUIRE);
      const pt_buf& b = a->buf[g & 1];
      std::uint64_t q1 = detail::seq_read_begin(b.seq);
      if ((q1 & 1) == 0) {
        fn(b);
        if (detail::seq_read_valid(b.seq, q1)) {
          return;
        }
      }
    }
  }

  // change edits the idle buffer (a copy of the current one); false = abort.
  template <class Fn>
  core::Result<void> write(Fn&& change) {
    // A dead writer touched only the idle buffer, which is rebuilt below.
    if (int rc = detail::robust_lock(a->mutex, detail::no_repair{}); rc != 0) {
      return core::errno_code(rc);
    }
    std::uint64_t g = a->gen;
    pt_buf& cur = a->buf[g & 1];
    pt_buf& nxt = a->buf[(g + 1) & 1];
    detail::seq_write_begin(nxt.seq);  // odd even if a dead writer left it odd
    nxt.count = cur.count;
    for (std::uint32_t i = 0; i < cur.count && i < max_terms; ++i) {
      std::memcpy(&nxt.e[i], &cur.e[i], offsetof(pt_entry, value) + cur.e[i].vlen);
    }
    core::Result<void> r = change(nxt);
    detail::seq_write_end(nxt.seq);
    if (r) {
      __atomic_store_n(&a->gen, g + 1, __ATOMIC_RELEASE);
    }
    ::pthread_mutex_unlock(&a->mutex);
    return r;
  }
};

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
      return created.error();
    }
    auto opened = detail::open_segment(seg_name);
    if (!opened) {
      if (opened.error() == errc::not_found || opened.error() == errc::busy) {
        continue;
      }
      return opened.error();
    }
    p->seg = std::move(*opened);
    if (p->seg->size() != sizeof(pt_area)) {
      return errc::malformed;
    }
    p->a = reinterpret_cast<pt_area*>(p->seg->base());
    if (!detail::wait_ready(&p->a->magic, detail::pt_magic, 2000)) {
      return errc::busy;
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
    std::uint32_t i = 0;
    while (i < b.count && std::string_view(b.e[i].key, b.e[i].klen) != key) {
      ++i;
    }
    if (i == b.count) {
      if (b.count >= max_terms) {
        return errc::table_full;
      }
      ++b.count;
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
    for (std::uint32_t i = 0; i < b.count; ++i) {
      if (std::string_view(b.e[i].key, b.e[i].klen) == key) {
        found = true;
        if (i + 1 != b.count) {
          std::memcpy(&b.e[i], &b.e[b.count - 1], sizeof(pt_entry));
        }
        --b.count;
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

bool persistent_term::get_into(std::string_view key, std::string& out) const {
  bool found = false;
  impl_->read([&](const pt_buf& b) {
    found = false;
    std::uint32_t n =
        std::min<std::uint32_t>(__atomic_load_n(&b.count, __ATOMIC_RELAXED), max_terms);
    for (std::uint32_t i = 0; i < n; ++i) {
      const pt_entry& e = b.e[i];
      std::uint32_t kl = std::min<std::uint32_t>(e.klen, max_key_bytes);
      if (kl == key.size() && std::memcmp(e.key, key.data(), kl) == 0) {
        out.assign(e.value, std::min<std::uint32_t>(e.vlen, max_value_bytes));
        found = true;
        return;
      }
    }
  });
  return found;
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
  impl_->read([&](const pt_buf& b) {
    out.clear();
    std::uint32_t n =
        std::min<std::uint32_t>(__atomic_load_n(&b.count, __ATOMIC_RELAXED), max_terms);
    for (std::uint32_t i = 0; i < n; ++i) {
      const pt_entry& e = b.e[i];
      out.emplace_back(std::string(e.key, std::min<std::uint32_t>(e.klen, max_key_bytes)),
                       std::string(e.value, std::min<std::uint32_t>(e.vlen, max_value_bytes)));
    }
  });
  return out;
}

std::uint64_t persistent_term::generation() const noexcept {
  return __atomic_load_n(&impl_->a->gen, __ATOMIC_ACQUIRE);
}

}  // namespace otpd::shm_table
