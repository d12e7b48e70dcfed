// Creating, opening and adopting a table's segment, and the names of the
// table options. The segment's layout is layout.hpp's; this file fills a new
// header and publishes it, or checks an existing one.

#include <sched.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "hash.hpp"
#include "layout.hpp"
#include "robust_lock.hpp"
#include "segment.hpp"
#include "table_impl.hpp"
#include <fmt/format.h>

#include <otpd/core/clock.hpp>
#include <otpd/core/log.hpp>
#include <otpd/shm_table/table.hpp>

namespace otpd::shm_table {

using core::errc;
using namespace detail;

namespace {

// How long an opener waits for a creator to publish its segment.
constexpr int ready_timeout_ms = 2000;

}  // namespace

const char* to_string(table_type t) noexcept {
  return t == table_type::ordered_set ? "ordered_set" : "set";
}
const char* to_string(access_mode a) noexcept {
  return a == access_mode::public_table ? "public" : "protected";
}
const char* to_string(eviction e) noexcept {
  switch (e) {
    case eviction::lru:
      return "lru";
    case eviction::nearest_expiry:
      return "nearest_expiry";
    default:
      return "none";
  }
}
std::optional<table_type> table_type_from(std::string_view s) noexcept {
  if (s == "set") {
    return table_type::set;
  }
  if (s == "ordered_set") {
    return table_type::ordered_set;
  }
  return std::nullopt;
}
std::optional<access_mode> access_mode_from(std::string_view s) noexcept {
  if (s == "protected") {
    return access_mode::protected_table;
  }
  if (s == "public") {
    return access_mode::public_table;
  }
  return std::nullopt;
}
std::optional<eviction> eviction_from(std::string_view s) noexcept {
  if (s == "none") {
    return eviction::none;
  }
  if (s == "lru") {
    return eviction::lru;
  }
  if (s == "nearest_expiry") {
    return eviction::nearest_expiry;
  }
  return std::nullopt;
}

std::uint64_t segment_bytes(const table_options& o) {
  return plan_layout(o).segment_size;
}

Result<void> table::impl::bind() {
  damage = seg->damage_flag();
  seg_header h;
  if (seg->size() < sizeof h) {
    return {errc::corrupt, fmt::format("segment {}: {} bytes, smaller than a header: refused",
                                       seg->name(), seg->size())};
  }
  std::memcpy(&h, base, sizeof h);
  auto bad = [&](std::string_view what) -> Result<void> {
    return {errc::corrupt, fmt::format("segment {}: {}: refused", seg->name(), what)};
  };
  if (h.version != layout_version) {
    return {errc::malformed,
            fmt::format("segment {} has layout version {}; this build reads version {} (a segment "
                        "of another otpd build: remove_stale() at node start removes it)",
                        seg->name(), h.version, layout_version)};
  }
  if (h.type > 1 || h.access > 1 || h.policy > 2) {
    return bad("table type, access or eviction out of range");
  }
  if (h.max_entries == 0 || h.max_item_bytes == 0 || h.max_item_bytes > (1u << 20)) {
    return bad("max_entries or max_item_bytes out of range");
  }
  if (h.stripes == 0 || h.stripes > 1024 || (h.stripes & (h.stripes - 1)) != 0 ||
      (h.type == 1 && h.stripes != 1)) {
    return bad(fmt::format("{} stripes", h.stripes));
  }
  // The header must be exactly the one create() writes for these options:
  // every size and offset is recomputed and compared, so each array lies
  // inside the segment where the code expects it.
  table_options o;
  o.type = static_cast<table_type>(h.type);
  o.max_entries = h.max_entries;
  o.max_item_bytes = h.max_item_bytes;
  o.stripes = h.stripes;
  table_layout l = plan_layout(o);
  if (l.stripes != h.stripes || l.slots_per_stripe * l.stripes >= head_node ||
      l.slots_per_stripe != h.slots_per_stripe || l.buckets_per_stripe != h.buckets_per_stripe ||
      l.payload_off != h.payload_off || l.slot_size != h.slot_size ||
      l.journal_bytes != h.journal_bytes || l.stripes_off != h.stripes_off ||
      l.buckets_off != h.buckets_off || l.links_off != h.links_off || l.slots_off != h.slots_off ||
      l.journals_off != h.journals_off || l.segment_size != h.segment_size) {
    return bad("sizes or offsets do not match the table's options");
  }
  std::uint64_t cap = static_cast<std::uint64_t>(h.max_entries) * h.max_item_bytes;
  if (h.max_bytes == 0 || h.max_bytes > cap) {
    return bad("max_bytes out of range");
  }
  if (h.segment_size != seg->size()) {
    return bad(
        fmt::format("the header says {} bytes, the segment has {}", h.segment_size, seg->size()));
  }
  hdr = reinterpret_cast<seg_header*>(base);
  type = o.type;
  access = static_cast<access_mode>(h.access);
  policy = static_cast<eviction>(h.policy);
  stripes = h.stripes;
  smask = stripes - 1;
  spp = h.slots_per_stripe;
  bpp = h.buckets_per_stripe;
  bmask = bpp == 0 ? 0 : bpp - 1;
  slot_size = h.slot_size;
  stripe_bytes = static_cast<std::uint64_t>(spp) * slot_size;
  payload_off = h.payload_off;
  max_item = h.max_item_bytes;
  hash_seed = h.hash_seed;
  max_entries = h.max_entries;
  max_bytes = h.max_bytes;
  bytes_bind = max_bytes < cap;
  journal_bytes = h.journal_bytes;
  seg_size = h.segment_size;
  stripe_p = reinterpret_cast<stripe_hdr*>(base + h.stripes_off);
  buckets = reinterpret_cast<std::uint32_t*>(base + h.buckets_off);
  links = reinterpret_cast<slot_link*>(base + h.links_off);
  slots = base + h.slots_off;
  journals = base + h.journals_off;
  return {};
}

table::table(std::unique_ptr<impl> p) noexcept : impl_(std::move(p)) {}
table::table(table&&) noexcept = default;
table& table::operator=(table&&) noexcept = default;
table::~table() = default;

Result<table> table::create(std::string_view node, std::string_view name, const table_options& o) {
  if (!valid_node_name(node) || !valid_table_name(name) || o.max_entries == 0 ||
      o.max_item_bytes == 0 || o.max_item_bytes > (1u << 20) || o.stripes > 1024) {
    return errc::invalid_argument;
  }
  table_layout l = plan_layout(o);
  if (l.slots_per_stripe * l.stripes >= head_node) {
    return errc::invalid_argument;
  }

  std::string seg_name = segment_name(node, name);
  auto seg = create_segment(seg_name, l.segment_size);
  if (!seg) {
    return seg.fail();
  }
  auto p = std::make_unique<impl>();
  p->seg = std::move(*seg);
  p->base = p->seg->base();
  p->node = node;
  p->name = name;
  auto* h = reinterpret_cast<seg_header*>(p->base);
  h->version = layout_version;
  h->type = static_cast<std::uint8_t>(o.type);
  h->access = static_cast<std::uint8_t>(o.access);
  h->policy = static_cast<std::uint8_t>(o.policy);
  h->stripes = l.stripes;
  h->slots_per_stripe = static_cast<std::uint32_t>(l.slots_per_stripe);
  h->buckets_per_stripe = static_cast<std::uint32_t>(l.buckets_per_stripe);
  h->slot_size = static_cast<std::uint32_t>(l.slot_size);
  h->payload_off = l.payload_off;
  h->max_item_bytes = o.max_item_bytes;
  h->max_entries = o.max_entries;
  h->journal_bytes = static_cast<std::uint32_t>(l.journal_bytes);
  std::uint64_t cap = static_cast<std::uint64_t>(o.max_entries) * o.max_item_bytes;
  h->max_bytes = (o.max_bytes == 0 || o.max_bytes > cap) ? cap : o.max_bytes;
  h->segment_size = l.segment_size;
  h->stripes_off = l.stripes_off;
  h->buckets_off = l.buckets_off;
  h->links_off = l.links_off;
  h->slots_off = l.slots_off;
  h->journals_off = l.journals_off;
  h->owner_pid = ::getpid();
  h->creator_pid = ::getpid();
  h->hash_seed = random_seed();
  std::snprintf(h->node, sizeof h->node, "%.*s", static_cast<int>(node.size()), node.data());
  std::snprintf(h->name, sizeof h->name, "%.*s", static_cast<int>(name.size()), name.data());
  if (auto b = p->bind(); !b) {
    (void)remove_segment(seg_name);
    return b.fail();
  }
  for (std::uint32_t s = 0; s < l.stripes; ++s) {
    stripe_hdr& sh = p->stripe(s);
    init_robust_mutex(&sh.mutex);
    sh.level = 1;
    sh.free_head = 0;
    for (auto& f : sh.head_fwd) {
      f = nil;
    }
    for (std::uint32_t i = 0; i < p->spp; ++i) {
      p->link(s, i).next = i + 1 < p->spp ? i + 1 : nil;
      p->link(s, i).hash = i == 0 ? nil : i - 1;  // a free slot's prev
    }
  }
  if (l.buckets_per_stripe != 0) {
    std::memset(p->buckets, 0xFF, l.stripes * l.buckets_per_stripe * 4);
  }
  // Publish: openers wait for the magic before they trust anything else.
  __atomic_store_n(&h->magic, table_magic, __ATOMIC_RELEASE);
  return table(std::move(p));
}

Result<table> table::open(std::string_view node, std::string_view name) {
  if (!valid_node_name(node) || !valid_table_name(name)) {
    return errc::invalid_argument;
  }
  auto seg = open_segment(segment_name(node, name));
  // A creator between shm_open and ftruncate: give it the same time as a
  // creator that has not published its magic yet.
  auto until = core::deadline::after(core::milliseconds(ready_timeout_ms));
  while (!seg && seg.error() == errc::busy && !until.expired()) {
    ::sched_yield();
    seg = open_segment(segment_name(node, name));
  }
  if (!seg) {
    return seg.fail();
  }
  if ((*seg)->size() < sizeof(seg_header)) {
    return {errc::corrupt, fmt::format("segment {}: {} bytes, smaller than a header: refused",
                                       (*seg)->name(), (*seg)->size())};
  }
  auto* h = reinterpret_cast<seg_header*>((*seg)->base());
  if (!wait_ready(&h->magic, table_magic, ready_timeout_ms)) {
    if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != 0) {
      return {errc::corrupt, fmt::format("segment {}: bad magic: refused", (*seg)->name())};
    }
    return {errc::busy, fmt::format("segment {}: not published by its creator within {} ms",
                                    (*seg)->name(), ready_timeout_ms)};
  }
  auto p = std::make_unique<impl>();
  p->seg = std::move(*seg);
  p->base = p->seg->base();
  p->node = node;
  p->name = name;
  if (auto b = p->bind(); !b) {
    core::log_error("shm_table {}: {}", name, b.message());
    return b.fail();
  }
  return table(std::move(p));
}

Result<table> table::open_or_create(std::string_view node, std::string_view name,
                                    const table_options& options, bool* created) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto t = create(node, name, options);
    if (t || t.error() != errc::already_exists) {
      if (created != nullptr) {
        *created = t.has_value();
      }
      return t;
    }
    auto o = open(node, name);
    if (o || o.error() != errc::not_found) {
      if (created != nullptr) {
        *created = false;
      }
      return o;
    }
    // Removed between our create and open: try again.
  }
  return errc::busy;
}

Result<void> table::remove(std::string_view node, std::string_view name) {
  if (!valid_node_name(node) || !valid_table_name(name)) {
    return errc::invalid_argument;
  }
  return remove_segment(segment_name(node, name));
}

Result<void> table::adopt() {
  pid_t me = ::getpid();
  pid_t cur = __atomic_load_n(&impl_->hdr->owner_pid, __ATOMIC_ACQUIRE);
  if (cur == me) {
    return {};
  }
  if (pid_alive_not_zombie(cur)) {
    return errc::busy;
  }
  if (!__atomic_compare_exchange_n(&impl_->hdr->owner_pid, &cur, me, false, __ATOMIC_ACQ_REL,
                                   __ATOMIC_ACQUIRE)) {
    return errc::busy;
  }
  return {};
}

bool table::is_owner() const noexcept {
  return ld(impl_->hdr->owner_pid) == ::getpid();
}

}  // namespace otpd::shm_table
