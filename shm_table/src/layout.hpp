#pragma once

// The shared-memory layout: the one place that says what lives where in a
// table's segment and in a persistent_term area. Every process mapping a
// segment reads these structs at these offsets, whatever build it runs, so
// the static_asserts below pin every offset and size: a change to a struct
// breaks the build here, and a deliberate change must bump layout_version
// (openers refuse a segment of another version; remove_stale() removes it).
//
// A table's segment, "/dev/shm/otpd.<node>.<name>", mode 0600, fixed size:
//   header | stripe headers | bucket arrays | link arrays | slot arrays |
//   undo journals
// Every array holds one run per stripe, stripe 0 first; plan_layout() below
// computes the offsets and the creator stores them in the header; an opener
// recomputes them from the header's options and refuses a header whose
// offsets differ (table::impl::bind).

#include <pthread.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include <otpd/shm_table/persistent_term.hpp>
#include <otpd/shm_table/table.hpp>

namespace otpd::shm_table::detail {

constexpr std::uint64_t table_magic = 0x6f74706474616231ULL;  // "otpdtab1"
constexpr std::uint32_t layout_version = 5;
constexpr std::uint32_t nil = 0xFFFFFFFFu;        // no slot: end of a chain or list
constexpr std::uint32_t head_node = 0xFFFFFFFEu;  // the skip list's head node
constexpr int max_level = 16;                     // skip list levels

struct seg_header {
  std::uint64_t magic;  // published last by the creator (release)
  std::uint32_t version;
  std::uint8_t type;
  std::uint8_t access;
  std::uint8_t policy;
  std::uint8_t pad0;
  std::uint32_t stripes;
  std::uint32_t slots_per_stripe;
  std::uint32_t buckets_per_stripe;
  std::uint32_t slot_size;
  std::uint32_t payload_off;  // where the key starts inside a slot
  std::uint32_t max_item_bytes;
  std::uint32_t max_entries;
  std::uint32_t journal_bytes;
  std::uint64_t max_bytes;
  std::uint64_t segment_size;
  std::uint64_t stripes_off;
  std::uint64_t buckets_off;
  std::uint64_t links_off;
  std::uint64_t slots_off;
  std::uint64_t journals_off;
  std::int32_t owner_pid;  // atomic
  std::int32_t creator_pid;
  std::uint64_t repairs;    // atomic: half-done writes of dead processes rolled back
  std::uint64_t hash_seed;  // random, chosen at create: see hash_key
  char node[72];
  char name[72];
};

// One per stripe, each on its own cache lines.
struct alignas(64) stripe_hdr {
  pthread_mutex_t mutex;    // robust, process-shared: see robust_lock.hpp
  std::uint64_t seq;        // seqlock: odd while a write is in flight
  std::uint64_t lru_clock;  // logical time of accesses (atomic, not journaled)
  std::uint32_t count;      // live entries
  std::uint32_t free_head;  // the slot pool's free list
  std::uint64_t bytes;      // key + value bytes of the live entries
  std::uint32_t level;      // ordered_set: skip list levels in use
  std::uint32_t head_fwd[max_level];
};

// A slot's links live apart from its payload, in a dense array per stripe:
// a lookup walks its chain there, in a few cache lines that stay cached,
// and touches the payloads (which do not) only for the one entry it wants.
struct slot_link {
  std::uint32_t next;  // hash chain, or the free list
  std::uint32_t hash;  // high half of the key's hash; a free slot's prev
};

// A slot: this header, then (ordered_set) max_level forward pointers, then
// at payload_off the key and the value, up to max_item_bytes together.
struct slot_hdr {
  std::uint16_t klen;
  std::uint8_t level;  // ordered_set: forward pointers in use
  std::uint8_t live;
  std::uint32_t vlen;
  std::int64_t expire_ns;  // CLOCK_MONOTONIC; 0 = never
  std::uint64_t atime;     // lru_clock at the last access (atomic, not journaled)
};

// A stripe's undo journal: this header, then n records, each an undo_rec
// followed by len old bytes padded to 8.
struct journal_hdr {
  std::uint32_t n;  // published undo records; 0 = nothing to undo
  std::uint32_t pad;
};
struct undo_rec {
  std::uint64_t off;  // from the segment's base
  std::uint32_t len;
  std::uint32_t pad;
};

static_assert(offsetof(seg_header, magic) == 0);
static_assert(offsetof(seg_header, version) == 8);
static_assert(offsetof(seg_header, type) == 12);
static_assert(offsetof(seg_header, access) == 13);
static_assert(offsetof(seg_header, policy) == 14);
static_assert(offsetof(seg_header, pad0) == 15);
static_assert(offsetof(seg_header, stripes) == 16);
static_assert(offsetof(seg_header, slots_per_stripe) == 20);
static_assert(offsetof(seg_header, buckets_per_stripe) == 24);
static_assert(offsetof(seg_header, slot_size) == 28);
static_assert(offsetof(seg_header, payload_off) == 32);
static_assert(offsetof(seg_header, max_item_bytes) == 36);
static_assert(offsetof(seg_header, max_entries) == 40);
static_assert(offsetof(seg_header, journal_bytes) == 44);
static_assert(offsetof(seg_header, max_bytes) == 48);
static_assert(offsetof(seg_header, segment_size) == 56);
static_assert(offsetof(seg_header, stripes_off) == 64);
static_assert(offsetof(seg_header, buckets_off) == 72);
static_assert(offsetof(seg_header, links_off) == 80);
static_assert(offsetof(seg_header, slots_off) == 88);
static_assert(offsetof(seg_header, journals_off) == 96);
static_assert(offsetof(seg_header, owner_pid) == 104);
static_assert(offsetof(seg_header, creator_pid) == 108);
static_assert(offsetof(seg_header, repairs) == 112);
static_assert(offsetof(seg_header, hash_seed) == 120);
static_assert(offsetof(seg_header, node) == 128);
static_assert(offsetof(seg_header, name) == 200);
static_assert(sizeof(seg_header) == 272);

static_assert(sizeof(pthread_mutex_t) == 40);
static_assert(offsetof(stripe_hdr, mutex) == 0);
static_assert(offsetof(stripe_hdr, seq) == 40);
static_assert(offsetof(stripe_hdr, lru_clock) == 48);
static_assert(offsetof(stripe_hdr, count) == 56);
static_assert(offsetof(stripe_hdr, free_head) == 60);
static_assert(offsetof(stripe_hdr, bytes) == 64);
static_assert(offsetof(stripe_hdr, level) == 72);
static_assert(offsetof(stripe_hdr, head_fwd) == 76);
static_assert(sizeof(stripe_hdr) == 192);
static_assert(alignof(stripe_hdr) == 64);

static_assert(offsetof(slot_link, next) == 0);
static_assert(offsetof(slot_link, hash) == 4);
static_assert(sizeof(slot_link) == 8);

static_assert(offsetof(slot_hdr, klen) == 0);
static_assert(offsetof(slot_hdr, level) == 2);
static_assert(offsetof(slot_hdr, live) == 3);
static_assert(offsetof(slot_hdr, vlen) == 4);
static_assert(offsetof(slot_hdr, expire_ns) == 8);
static_assert(offsetof(slot_hdr, atime) == 16);
static_assert(sizeof(slot_hdr) == 24);

static_assert(offsetof(journal_hdr, n) == 0);
static_assert(offsetof(journal_hdr, pad) == 4);
static_assert(sizeof(journal_hdr) == 8);
static_assert(offsetof(undo_rec, off) == 0);
static_assert(offsetof(undo_rec, len) == 8);
static_assert(offsetof(undo_rec, pad) == 12);
static_assert(sizeof(undo_rec) == 16);

inline std::uint64_t round_up(std::uint64_t v, std::uint64_t a) {
  return (v + a - 1) / a * a;
}
inline std::uint32_t pow2_at_least(std::uint64_t v) {
  std::uint32_t p = 1;
  while (p < v && p < (1u << 30)) {
    p <<= 1;
  }
  return p;
}

// Where everything lives in the segment of a table created with o.
struct table_layout {
  std::uint32_t stripes;
  std::uint64_t slots_per_stripe;
  std::uint64_t buckets_per_stripe;  // 0 for an ordered_set
  std::uint32_t payload_off;
  std::uint64_t slot_size;
  std::uint64_t journal_bytes;
  std::uint64_t stripes_off;
  std::uint64_t buckets_off;
  std::uint64_t links_off;
  std::uint64_t slots_off;
  std::uint64_t journals_off;
  std::uint64_t segment_size;
};

// A set is split into 2^k stripes by the key's hash (o.stripes rounded up to
// a power of two, else about one per 64 entries, 64 at most); an ordered_set
// has one. Each stripe's pool has some slack over max_entries / stripes. A
// journal holds the largest single step of a write: two slots' worth of bytes
// plus the small fields a skip list or chain relink saves.
inline table_layout plan_layout(const table_options& o) {
  table_layout l{};
  bool ordered = o.type == table_type::ordered_set;
  l.stripes = 1;
  if (!ordered) {
    l.stripes = o.stripes != 0 ? pow2_at_least(o.stripes)
                               : std::min<std::uint32_t>(64, pow2_at_least(o.max_entries / 64 + 1));
    if (o.stripes == 0 && l.stripes > 1 && o.max_entries < l.stripes * 64) {
      l.stripes >>= 1;
    }
  }
  std::uint64_t stripes = l.stripes;
  l.slots_per_stripe = stripes == 1
                           ? o.max_entries
                           : (static_cast<std::uint64_t>(o.max_entries) * 5 / 4) / stripes + 16;
  std::uint64_t spp = l.slots_per_stripe;
  l.buckets_per_stripe = ordered ? 0 : pow2_at_least(spp);
  l.payload_off = sizeof(slot_hdr) + (ordered ? 4 * max_level : 0);
  l.slot_size = round_up(l.payload_off + o.max_item_bytes, 32);
  l.journal_bytes = round_up(sizeof(journal_hdr) + 2 * (sizeof(undo_rec) + l.slot_size) +
                                 (4 * max_level + 64) * (sizeof(undo_rec) + 8),
                             64);
  l.stripes_off = round_up(sizeof(seg_header), 4096);
  l.buckets_off = round_up(l.stripes_off + stripes * sizeof(stripe_hdr), 64);
  l.links_off = round_up(l.buckets_off + stripes * l.buckets_per_stripe * 4, 64);
  l.slots_off = round_up(l.links_off + stripes * spp * sizeof(slot_link), 64);
  l.journals_off = l.slots_off + stripes * spp * l.slot_size;
  l.segment_size = l.journals_off + stripes * l.journal_bytes;
  return l;
}

// --- the persistent_term area ------------------------------------------------
//
// "/dev/shm/otpd-pt.<node>.<name>": one pt_area. Two buffers and a
// generation counter; the current image is buf[gen & 1] (see
// persistent_term.cpp).

constexpr std::uint64_t pt_magic = 0x6f74706470746d31ULL;  // "otpdptm1"

struct pt_entry {
  std::uint32_t klen;
  std::uint32_t vlen;
  char key[persistent_term::max_key_bytes];
  char value[persistent_term::max_value_bytes];
};

struct pt_buf {
  std::uint64_t seq;  // seqlock of this buffer
  std::uint32_t count;
  std::uint32_t pad;
  pt_entry e[persistent_term::max_terms];
};

// The padding is wanted: the writers' mutex, the generation readers poll and
// the buffers each get their own cache lines.
struct pt_area {  // NOLINT(clang-analyzer-optin.performance.Padding)
  std::uint64_t magic;
  std::uint64_t size;
  pthread_mutex_t mutex;
  alignas(64) std::uint64_t gen;
  alignas(64) pt_buf buf[2];
};

static_assert(offsetof(pt_entry, klen) == 0);
static_assert(offsetof(pt_entry, vlen) == 4);
static_assert(offsetof(pt_entry, key) == 8);
static_assert(offsetof(pt_entry, value) == 72);
static_assert(sizeof(pt_entry) == 1096);
static_assert(offsetof(pt_buf, seq) == 0);
static_assert(offsetof(pt_buf, count) == 8);
static_assert(offsetof(pt_buf, pad) == 12);
static_assert(offsetof(pt_buf, e) == 16);
static_assert(sizeof(pt_buf) == 70160);
static_assert(offsetof(pt_area, magic) == 0);
static_assert(offsetof(pt_area, size) == 8);
static_assert(offsetof(pt_area, mutex) == 16);
static_assert(offsetof(pt_area, gen) == 64);
static_assert(offsetof(pt_area, buf) == 128);
static_assert(sizeof(pt_area) == 140480);

}  // namespace otpd::shm_table::detail
