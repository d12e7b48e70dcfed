// shm_table: an ETS-like table in POSIX shared memory that survives the death
// of any process using it, at any instruction.
//
// Layout. One segment per table, "/dev/shm/otpd.<node>.<name>", mode 0600,
// fixed size. Boost.Interprocess maps it; nothing of Boost lives inside (its
// mutexes and its allocator are not robust). The segment holds:
//   header | stripe headers | bucket arrays | link arrays | slot arrays |
//   undo journals
// A set is split into 2^k stripes by the key's hash; each stripe is a small
// self-contained table: its robust mutex, its seqlock counter, its own slot
// pool (a free list of fixed-size slots: key + value up to max_item_bytes),
// its hash buckets (chains of slot indices), its counters and its undo
// journal. A slot's chain link and hash tag sit apart from its payload, in
// the stripe's dense link array: a lookup walks its chain there (a few cache
// lines that stay cached) and touches only the one payload it wants, so it
// costs one trip to memory however long the chain. An ordered_set has one
// stripe whose slots form a skip list.
// Because a write touches exactly one stripe, it needs exactly one lock and
// one journal: there is no cross-lock state a crash could leave half-updated,
// and writes to keys of different stripes run in parallel.
//
// Writers. lock the stripe's pthread mutex (PTHREAD_MUTEX_ROBUST,
// PTHREAD_PROCESS_SHARED), make its sequence counter odd, then before every
// store into the segment append an undo record (offset, length, old bytes) to
// the stripe's journal and publish it by bumping the journal's record count.
// The write commits by resetting that count to 0, then the counter goes even
// and the mutex is released; only then does the call return success. An
// operation that fails half way rolls back through the same journal; an
// operation that needs more undo space than one journal (clear,
// select_delete, an insert evicting many entries) commits step by step, each
// step a complete change.
//
// Crash repair. If a writer is SIGKILLed while holding the mutex, the kernel
// marks the robust mutex; the next locker gets EOWNERDEAD, applies the undo
// records in reverse (rolling the half-done write back to the last committed
// state), clears the journal, makes the counter even, and only then calls
// pthread_mutex_consistent. Replaying the undo records is idempotent, so a
// repairer killed while repairing leaves the job to the next one (who gets
// EOWNERDEAD again). A write that returned success had committed before the
// unlock, so no repair ever undoes it. Records are published with a release
// store followed by a fence, so a record is always in memory before the bytes
// it protects change, whatever instruction the writer dies at.
//
// Readers take no lock (ETS read_concurrency and more): read the stripe's
// counter; if odd, a write is in flight; walk the chain, copy the value out,
// and read the counter again: any change means a write overlapped, so retry.
// The common lookup (a set, no TTL on the entry, no LRU) is one inlined pass
// with no call but the value's copy: short enough that the CPU overlaps the
// next lookup's memory accesses with this one's, which is where a table far
// larger than the caches gets its speed.
// Every index and length read during the walk is bounds-checked and every
// walk is step-limited, so a reader racing a writer may read stale bytes but
// never leaves the segment or loops, and it never returns them. A reader that
// keeps seeing an odd counter tries the mutex (trylock, never blocking): an
// EOWNERDEAD there means the writer is dead, and the reader repairs the
// stripe itself, so readers never wait on a dead process.
//
// Capacity. Each stripe's pool has some slack over max_entries / stripes;
// max_entries (and max_bytes) are checked against the sum of the stripes'
// counters, read under the writer's own stripe lock only: concurrent inserts
// into different stripes at the very limit may admit one entry each beyond it
// (bounded by the number of concurrent writers). A stripe whose pool is
// exhausted evicts within itself (LRU by a per-stripe logical clock that
// readers bump, or nearest expiry) or gives errc::table_full.
//
// TTL. An entry stores its expiry in CLOCK_MONOTONIC nanoseconds (the same
// clock in every process): an expired entry is invisible at once to every
// read, and is reclaimed by sweep() (or overwritten by an insert of its key).

#include <pthread.h>
#include <sched.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <vector>

#include "segment.hpp"
#include <fmt/format.h>

#include <otpd/core/clock.hpp>
#include <otpd/core/log.hpp>
#include <otpd/shm_table/table.hpp>

namespace otpd::shm_table {

using core::errc;

namespace {

constexpr std::uint64_t table_magic = 0x6f74706474616231ULL;  // "otpdtab1"
constexpr std::uint32_t layout_version = 5;
constexpr std::uint32_t nil = 0xFFFFFFFFu;
constexpr std::uint32_t head_node = 0xFFFFFFFEu;  // the skip list's head node
constexpr int max_level = 16;
constexpr int ready_timeout_ms = 2000;

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

struct alignas(64) stripe_hdr {
  pthread_mutex_t mutex;
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

struct slot_hdr {
  std::uint16_t klen;
  std::uint8_t level;  // ordered_set: forward pointers in use
  std::uint8_t live;
  std::uint32_t vlen;
  std::int64_t expire_ns;  // CLOCK_MONOTONIC; 0 = never
  std::uint64_t atime;     // lru_clock at the last access (atomic, not journaled)
};
static_assert(sizeof(slot_hdr) == 24);

struct journal_hdr {
  std::uint32_t n;  // published undo records; 0 = nothing to undo
  std::uint32_t pad;
};
struct undo_rec {
  std::uint64_t off;
  std::uint32_t len;
  std::uint32_t pad;
};

template <class T>
T ld(const T& x) noexcept {
  return __atomic_load_n(&x, __ATOMIC_RELAXED);
}
template <class T, class U>
void st(T& x, U v) noexcept {
  __atomic_store_n(&x, static_cast<T>(v), __ATOMIC_RELAXED);
}

std::uint64_t round_up(std::uint64_t v, std::uint64_t a) {
  return (v + a - 1) / a * a;
}
std::uint32_t pow2_at_least(std::uint64_t v) {
  std::uint32_t p = 1;
  while (p < v && p < (1u << 30)) {
    p <<= 1;
  }
  return p;
}

std::uint64_t mix64(std::uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

std::uint64_t load8(const char* p) {
  std::uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}
std::uint64_t load4(const char* p) {
  std::uint32_t w;
  std::memcpy(&w, p, 4);
  return w;
}

// The high and low halves of a 64x64 product folded together with both
// operands (wyhash's protected form): one multiply mixes every bit of both
// into the result, and no operand value, zero included, makes it forget the
// other one.
std::uint64_t mix(std::uint64_t a, std::uint64_t b) {
  unsigned __int128 r = static_cast<unsigned __int128>(a) * b;
  return a ^ b ^ static_cast<std::uint64_t>(r) ^ static_cast<std::uint64_t>(r >> 64);
}

// Every lookup hashes its key, so this is on the hot path: keys of up to 16
// bytes (the common case) are read with two possibly overlapping loads, no
// loop and no call, and folded with two multiplies (the scheme of wyhash).
// Its bits choose the stripe (low), the bucket (from bit 16) and the tag kept
// in the slot (high 32), so all 64 must be well mixed. secret is the table's
// own random seed (chosen at create, kept in its header): whoever picks the
// keys cannot know which of them collide, so they cannot pile entries into
// one stripe or one chain.
[[gnu::always_inline]] inline std::uint64_t hash_key(std::string_view k, std::uint64_t secret) {
  constexpr std::uint64_t k0 = 0xa0761d6478bd642fULL;
  constexpr std::uint64_t k1 = 0xe7037ed1a0b428dbULL;
  constexpr std::uint64_t k2 = 0x8ebc6af09c88c6e3ULL;
  const char* p = k.data();
  std::size_t n = k.size();
  std::uint64_t seed = secret ^ k0 ^ (n * k2);
  std::uint64_t a = 0;
  std::uint64_t b = 0;
  if (n <= 16) {
    if (n >= 8) {
      a = load8(p);
      b = load8(p + n - 8);
    } else if (n >= 4) {
      a = load4(p);
      b = load4(p + n - 4);
    } else if (n > 0) {
      a = (static_cast<std::uint64_t>(static_cast<unsigned char>(p[0])) << 16) |
          (static_cast<std::uint64_t>(static_cast<unsigned char>(p[n >> 1])) << 8) |
          static_cast<unsigned char>(p[n - 1]);
    }
  } else {
    const char* q = p;
    std::size_t left = n;
    while (left > 16) {
      seed = mix(load8(q) ^ k1, load8(q + 8) ^ seed);
      q += 16;
      left -= 16;
    }
    a = load8(p + n - 16);
    b = load8(p + n - 8);
  }
  return mix(k1 ^ n, mix(a ^ k1, b ^ seed));
}

// Key equality inline for short keys (two loads per side), memcmp beyond.
bool keys_equal(const char* a, const char* b, std::size_t n) {
  if (n >= 8 && n <= 16) {
    return ((load8(a) ^ load8(b)) | (load8(a + n - 8) ^ load8(b + n - 8))) == 0;
  }
  return std::memcmp(a, b, n) == 0;
}

int compare_keys(std::string_view a, std::string_view b) {
  std::size_t n = std::min(a.size(), b.size());
  int c = n == 0 ? 0 : std::memcmp(a.data(), b.data(), n);
  if (c != 0) {
    return c;
  }
  return a.size() < b.size() ? -1 : (a.size() > b.size() ? 1 : 0);
}

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// A fresh 64-bit secret for a table's hash: from the kernel's entropy pool,
// or, should getrandom fail, from the clock, the pid and a stack address.
std::uint64_t random_seed() {
  std::uint64_t v = 0;
  if (::getrandom(&v, sizeof v, 0) == static_cast<ssize_t>(sizeof v)) {
    return v;
  }
  int here = 0;
  return mix64(static_cast<std::uint64_t>(core::monotonic_ns()) ^
               (static_cast<std::uint64_t>(::getpid()) << 32) ^
               reinterpret_cast<std::uintptr_t>(&here));
}

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

bool pid_alive_not_zombie(pid_t pid) {
  if (!detail::pid_alive(pid)) {
    return false;
  }
  // A killed owner stays a zombie until its parent reaps it: it is dead.
  FILE* f = std::fopen(fmt::format("/proc/{}/stat", pid).c_str(), "re");
  if (f == nullptr) {
    return true;
  }
  char buf[512];
  std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  const char* close = std::strrchr(buf, ')');
  return !(close != nullptr && close[1] == ' ' && close[2] == 'Z');
}

}  // namespace

// ---------------------------------------------------------------------------

struct table::impl {
  std::unique_ptr<detail::segment> seg;
  char* base = nullptr;
  seg_header* hdr = nullptr;
  std::string node;
  std::string name;
  table_type type = table_type::set;
  access_mode access = access_mode::protected_table;
  eviction policy = eviction::none;
  std::uint32_t stripes = 1;
  std::uint32_t smask = 0;
  std::uint32_t spp = 0;  // slots per stripe
  std::uint32_t bpp = 0;  // buckets per stripe
  std::uint32_t bmask = 0;
  std::uint32_t slot_size = 0;
  std::uint64_t stripe_bytes = 0;  // spp * slot_size
  std::uint32_t payload_off = 0;
  std::uint32_t max_item = 0;
  std::uint64_t hash_seed = 0;
  std::uint32_t max_entries = 0;
  std::uint64_t max_bytes = 0;
  bool bytes_bind = false;
  std::uint32_t journal_bytes = 0;
  std::uint64_t seg_size = 0;
  stripe_hdr* stripe_p = nullptr;
  std::uint32_t* buckets = nullptr;
  slot_link* links = nullptr;
  char* slots = nullptr;
  char* journals = nullptr;
  mutable std::uint64_t repairs = 0;

  void bind() {
    hdr = reinterpret_cast<seg_header*>(base);
    type = static_cast<table_type>(hdr->type);
    access = static_cast<access_mode>(hdr->access);
    policy = static_cast<eviction>(hdr->policy);
    stripes = hdr->stripes;
    smask = stripes - 1;
    spp = hdr->slots_per_stripe;
    bpp = hdr->buckets_per_stripe;
    bmask = bpp == 0 ? 0 : bpp - 1;
    slot_size = hdr->slot_size;
    stripe_bytes = static_cast<std::uint64_t>(spp) * slot_size;
    payload_off = hdr->payload_off;
    max_item = hdr->max_item_bytes;
    hash_seed = hdr->hash_seed;
    max_entries = hdr->max_entries;
    max_bytes = hdr->max_bytes;
    bytes_bind = max_bytes < static_cast<std::uint64_t>(max_entries) * max_item;
    journal_bytes = hdr->journal_bytes;
    seg_size = hdr->segment_size;
    stripe_p = reinterpret_cast<stripe_hdr*>(base + hdr->stripes_off);
    buckets = reinterpret_cast<std::uint32_t*>(base + hdr->buckets_off);
    links = reinterpret_cast<slot_link*>(base + hdr->links_off);
    slots = base + hdr->slots_off;
    journals = base + hdr->journals_off;
  }

  [[nodiscard]] std::uint64_t hash(std::string_view key) const { return hash_key(key, hash_seed); }
  [[nodiscard]] stripe_hdr& stripe(std::uint32_t s) const { return stripe_p[s]; }
  [[nodiscard]] std::uint32_t* bucket_of(std::uint32_t s, std::uint64_t h) const {
    return buckets + static_cast<std::uint64_t>(s) * bpp + ((h >> 16) & bmask);
  }
  [[nodiscard]] slot_hdr* slot(std::uint32_t s, std::uint32_t idx) const {
    return reinterpret_cast<slot_hdr*>(slots +
                                       (static_cast<std::uint64_t>(s) * spp + idx) * slot_size);
  }
  [[nodiscard]] slot_link& link(std::uint32_t s, std::uint32_t idx) const {
    return links[static_cast<std::uint64_t>(s) * spp + idx];
  }
  [[nodiscard]] std::uint32_t* fwd(std::uint32_t s, std::uint32_t idx) const {
    if (idx == head_node) {
      return stripe(s).head_fwd;
    }
    return reinterpret_cast<std::uint32_t*>(reinterpret_cast<char*>(slot(s, idx)) +
                                            sizeof(slot_hdr));
  }
  [[nodiscard]] char* key_ptr(slot_hdr* sl) const {
    return reinterpret_cast<char*>(sl) + payload_off;
  }
  [[nodiscard]] journal_hdr* journal(std::uint32_t s) const {
    return reinterpret_cast<journal_hdr*>(journals + static_cast<std::uint64_t>(s) * journal_bytes);
  }
  [[nodiscard]] std::uint32_t stripe_of(std::uint64_t h) const {
    return type == table_type::ordered_set ? 0 : static_cast<std::uint32_t>(h & smask);
  }
  // Key and value of a slot, lengths clamped so that a racing reader never
  // leaves the slot.
  [[nodiscard]] std::string_view key_of(slot_hdr* sl) const {
    std::uint32_t k = std::min<std::uint32_t>(ld(sl->klen), max_item);
    return {key_ptr(sl), k};
  }
  [[nodiscard]] std::string_view value_of(slot_hdr* sl) const {
    std::uint32_t k = std::min<std::uint32_t>(ld(sl->klen), max_item);
    std::uint32_t v = std::min<std::uint32_t>(ld(sl->vlen), max_item - k);
    return {key_ptr(sl) + k, v};
  }

  [[nodiscard]] bool writable() const {
    return access == access_mode::public_table || ld(hdr->owner_pid) == ::getpid();
  }
  [[nodiscard]] std::uint64_t total_count() const {
    std::uint64_t n = 0;
    for (std::uint32_t s = 0; s < stripes; ++s) {
      n += ld(stripe(s).count);
    }
    return n;
  }
  [[nodiscard]] std::uint64_t total_bytes() const {
    std::uint64_t n = 0;
    for (std::uint32_t s = 0; s < stripes; ++s) {
      n += ld(stripe(s).bytes);
    }
    return n;
  }

  // --- the undo journal ----------------------------------------------------

  // Rolls the stripe back to its last committed state. Caller holds the lock.
  void undo(std::uint32_t s) const {
    journal_hdr* j = journal(s);
    std::uint32_t n = __atomic_load_n(&j->n, __ATOMIC_ACQUIRE);
    if (n == 0) {
      return;
    }
    std::vector<const char*> recs;
    recs.reserve(n);
    const char* p = reinterpret_cast<const char*>(j) + sizeof(journal_hdr);
    const char* end = reinterpret_cast<const char*>(j) + journal_bytes;
    for (std::uint32_t i = 0; i < n; ++i) {
      undo_rec r;
      if (p + sizeof r > end) {
        break;
      }
      std::memcpy(&r, p, sizeof r);
      if (r.off + r.len > seg_size || p + sizeof r + r.len > end) {
        break;  // cannot happen: a record is counted only once complete
      }
      recs.push_back(p);
      p += sizeof r + round_up(r.len, 8);
    }
    for (auto it = recs.rbegin(); it != recs.rend(); ++it) {  // NOLINT(modernize-loop-convert)
      undo_rec r;
      std::memcpy(&r, *it, sizeof r);
      std::memcpy(base + r.off, *it + sizeof r, r.len);
    }
    std::atomic_thread_fence(std::memory_order_release);
    __atomic_store_n(&j->n, 0u, __ATOMIC_RELEASE);
  }

  // Caller holds the stripe's lock; a previous holder died (or left a mark).
  void repair(std::uint32_t s) const {
    undo(s);
    stripe_hdr& sh = stripe(s);
    std::uint64_t q = ld(sh.seq);
    if ((q & 1) != 0) {
      __atomic_store_n(&sh.seq, q + 1, __ATOMIC_RELEASE);
    }
    ++repairs;
    __atomic_add_fetch(&hdr->repairs, 1, __ATOMIC_RELAXED);
    core::log_warn("shm_table {}: repaired stripe {} after a writer died in it", name, s);
  }

  // Locks stripe s, repairing it when its previous holder died.
  [[nodiscard]] core::Result<void> lock(std::uint32_t s) const {
    stripe_hdr& sh = stripe(s);
    int rc = ::pthread_mutex_lock(&sh.mutex);
    if (rc == EOWNERDEAD) {
      repair(s);
      ::pthread_mutex_consistent(&sh.mutex);
    } else if (rc != 0) {
      core::log_error("shm_table {}: unable to lock stripe {}: {}", name, s, std::strerror(rc));
      return core::errno_code(rc);
    } else if (ld(journal(s)->n) != 0 || (ld(sh.seq) & 1) != 0) {
      repair(s);
    }
    return {};
  }
  void unlock(std::uint32_t s) const { ::pthread_mutex_unlock(&stripe(s).mutex); }

  // A reader that keeps seeing a write in flight checks, without blocking,
  // whether the writer is dead, and repairs the stripe if so.
  void try_repair(std::uint32_t s) const {
    stripe_hdr& sh = stripe(s);
    int rc = ::pthread_mutex_trylock(&sh.mutex);
    if (rc == EOWNERDEAD) {
      repair(s);
      ::pthread_mutex_consistent(&sh.mutex);
      ::pthread_mutex_unlock(&sh.mutex);
    } else if (rc == 0) {
      if (ld(journal(s)->n) != 0 || (ld(sh.seq) & 1) != 0) {
        repair(s);
      }
      ::pthread_mutex_unlock(&sh.mutex);
    }
  }

  void settle(std::uint32_t s, std::uint32_t attempt) const {
    if (attempt < 64) {
      cpu_relax();
      return;
    }
    if (attempt % 16 == 0) {
      try_repair(s);
    }
    ::sched_yield();
  }

  // Runs fn as a lock-free read of stripe s until it saw a stable stripe.
  // Scans (lock_after > 0) fall back to the lock after that many torn
  // attempts, so a busy writer cannot starve a long scan.
  template <class Fn>
  void read_stripe(std::uint32_t s, Fn&& fn, std::uint32_t lock_after = 0) const {
    stripe_hdr& sh = stripe(s);
    std::uint32_t torn = 0;
    for (std::uint32_t attempt = 0;; ++attempt) {
      std::uint64_t q1 = __atomic_load_n(&sh.seq, __ATOMIC_ACQUIRE);
      if ((q1 & 1) != 0) {
        settle(s, attempt);
        continue;
      }
      fn();
      std::atomic_thread_fence(std::memory_order_acquire);
      if (ld(sh.seq) == q1) {
        return;
      }
      if (lock_after != 0 && ++torn >= lock_after && lock(s)) {
        fn();
        unlock(s);
        return;
      }
    }
  }

  // --- lock-free lookups (also used under the lock) --------------------------

  [[nodiscard]] [[gnu::always_inline]] std::uint32_t find_set(std::uint32_t s, std::uint64_t h,
                                                              std::string_view key) const {
    auto h32 = static_cast<std::uint32_t>(h >> 32);
    const char* stripe_slots = slots + s * stripe_bytes;
    auto home = static_cast<std::uint32_t>(h >> 16) & bmask;
    const slot_link* lk = links + static_cast<std::size_t>(s) * spp;
    std::uint32_t idx = ld(buckets[s * bpp + home]);
    for (std::uint32_t steps = 0; idx < spp && steps <= spp; ++steps) {
      if (ld(lk[idx].hash) == h32) {
        const auto* sl = reinterpret_cast<const slot_hdr*>(
            stripe_slots + static_cast<std::size_t>(idx) * slot_size);
        if (ld(sl->klen) == key.size() &&
            keys_equal(reinterpret_cast<const char*>(sl) + payload_off, key.data(), key.size())) {
          return idx;
        }
      }
      idx = ld(lk[idx].next);
    }
    return nil;
  }

  // Skip list search: the last node before key on each level (update may be
  // null), and the node holding key or nil.
  std::uint32_t find_ordered(std::string_view key, std::uint32_t* update) const {
    stripe_hdr& sh = stripe(0);
    std::uint32_t level = std::min<std::uint32_t>(ld(sh.level), max_level);
    std::uint32_t x = head_node;
    std::uint64_t steps = 0;
    const std::uint64_t max_steps = static_cast<std::uint64_t>(spp) * max_level + max_level;
    for (int l = max_level - 1; l >= 0; --l) {
      if (static_cast<std::uint32_t>(l) < level) {
        while (steps++ < max_steps) {
          std::uint32_t nx = ld(fwd(0, x)[l]);
          if (nx >= spp || compare_keys(key_of(slot(0, nx)), key) >= 0) {
            break;
          }
          x = nx;
        }
      }
      if (update != nullptr) {
        update[l] = x;
      }
    }
    std::uint32_t c = ld(fwd(0, x)[0]);
    if (c < spp && compare_keys(key_of(slot(0, c)), key) == 0) {
      return c;
    }
    return nil;
  }

  [[nodiscard]] std::uint32_t find(std::uint32_t s, std::uint64_t h, std::string_view key) const {
    return type == table_type::ordered_set ? find_ordered(key, nullptr) : find_set(s, h, key);
  }

  [[nodiscard]] static bool expired(const slot_hdr* sl, std::int64_t now) {
    std::int64_t e = ld(sl->expire_ns);
    return e != 0 && e <= now;
  }

  bool lookup_slow(std::uint64_t h, std::string_view key, std::string& out) const;

  void touch(std::uint32_t s, slot_hdr* sl) const {
    if (policy == eviction::lru) {
      std::uint64_t t = __atomic_add_fetch(&stripe(s).lru_clock, 1, __ATOMIC_RELAXED);
      st(sl->atime, t);
    }
  }

  entry copy_entry(slot_hdr* sl, std::int64_t now) const {
    entry e{std::string(key_of(sl)), std::string(value_of(sl)), std::nullopt};
    std::int64_t x = ld(sl->expire_ns);
    if (x != 0) {
      e.ttl_left_ms = std::max<std::int64_t>(0, (x - now) / 1'000'000);
    }
    return e;
  }
};

namespace fault_injection {
namespace {
int crash_at = 0;  // per process: set only in a test's forked child
int crash_points = 0;
}  // namespace

void crash_at_point(int n) noexcept {
  crash_at = n;
  crash_points = 0;
}

// A crash point: dies here when a test asked for this one.
inline void point() noexcept {
  if (crash_at != 0 && ++crash_points == crash_at) {
    ::raise(SIGKILL);
  }
}

}  // namespace fault_injection

namespace {

using impl_t = table::impl;

// A write transaction on one stripe: lock (with repair), seqlock odd, undo
// records before every store, commit, seqlock even, unlock. Destroyed without
// commit, it rolls the stripe back.
class writer {
 public:
  writer(const impl_t& t, std::uint32_t s) : t_(t), s_(s) {
    auto r = t_.lock(s_);
    if (!r) {
      ec_ = r.error();
      return;
    }
    locked_ = true;
    j_ = t_.journal(s_);
    reset_cursor();
    stripe_hdr& sh = t_.stripe(s_);
    st(sh.seq, ld(sh.seq) + 1);
    std::atomic_thread_fence(std::memory_order_release);
  }
  writer(const writer&) = delete;
  writer& operator=(const writer&) = delete;
  writer(writer&&) = delete;
  writer& operator=(writer&&) = delete;
  ~writer() {
    if (!locked_) {
      return;
    }
    if (n_ != 0) {
      t_.undo(s_);
    }
    stripe_hdr& sh = t_.stripe(s_);
    __atomic_store_n(&sh.seq, ld(sh.seq) + 1, __ATOMIC_RELEASE);
    t_.unlock(s_);
  }

  [[nodiscard]] bool ok() const { return locked_; }
  [[nodiscard]] std::error_code error() const { return ec_; }

  // Journals the current bytes of [p, p+len) before the caller changes them.
  void save(const void* p, std::size_t len) {
    auto off = static_cast<std::uint64_t>(static_cast<const char*>(p) - t_.base);
    undo_rec r{off, static_cast<std::uint32_t>(len), 0};
    std::size_t need = sizeof r + round_up(len, 8);
    char* end = reinterpret_cast<char*>(j_) + t_.journal_bytes;
    if (cursor_ + need > end) {
      // The journal is sized for the largest operation; overflowing it is a bug.
      core::log_error("shm_table {}: undo journal overflow", t_.name);
      std::abort();
    }
    fault_injection::point();
    std::memcpy(cursor_, &r, sizeof r);
    std::memcpy(cursor_ + sizeof r, p, len);
    cursor_ += need;
    ++n_;
    // The record must be in memory before the bytes it protects change.
    __atomic_store_n(&j_->n, n_, __ATOMIC_RELEASE);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    fault_injection::point();
  }
  template <class T>
  void save_field(const T& x) {
    save(&x, sizeof x);
  }

  // Everything written so far stays, even if this process dies next.
  void commit() {
    fault_injection::point();
    std::atomic_thread_fence(std::memory_order_release);
    __atomic_store_n(&j_->n, 0u, __ATOMIC_RELEASE);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    n_ = 0;
    reset_cursor();
    fault_injection::point();
  }
  void rollback() {
    t_.undo(s_);
    n_ = 0;
    reset_cursor();
  }

 private:
  void reset_cursor() { cursor_ = reinterpret_cast<char*>(j_) + sizeof(journal_hdr); }

  const impl_t& t_;
  std::uint32_t s_;
  bool locked_ = false;
  std::error_code ec_;
  journal_hdr* j_ = nullptr;
  char* cursor_ = nullptr;
  std::uint32_t n_ = 0;
};

// Unlinks slot idx from the stripe's index and returns it to the pool.
void free_slot(const impl_t& t, writer& w, std::uint32_t s, std::uint32_t idx) {
  stripe_hdr& sh = t.stripe(s);
  slot_hdr* sl = t.slot(s, idx);
  if (t.type == table_type::ordered_set) {
    std::uint32_t update[max_level];
    t.find_ordered(t.key_of(sl), update);
    std::uint32_t* xf = t.fwd(s, idx);
    for (std::uint32_t l = 0; l < sl->level && l < max_level; ++l) {
      std::uint32_t* pf = t.fwd(s, update[l]);
      if (pf[l] == idx) {
        w.save_field(pf[l]);
        st(pf[l], xf[l]);
      }
    }
    std::uint32_t level = sh.level;
    while (level > 1 && sh.head_fwd[level - 1] == nil) {
      --level;
    }
    if (level != sh.level) {
      w.save_field(sh.level);
      st(sh.level, level);
    }
  } else {
    std::uint32_t* b = t.bucket_of(s, t.hash(t.key_of(sl)));
    slot_link& me = t.link(s, idx);
    if (*b == idx) {
      w.save_field(*b);
      st(*b, me.next);
    } else {
      std::uint32_t p = *b;
      for (std::uint32_t steps = 0; p < t.spp && steps <= t.spp; ++steps) {
        slot_link& pl = t.link(s, p);
        if (pl.next == idx) {
          w.save_field(pl.next);
          st(pl.next, me.next);
          break;
        }
        p = pl.next;
      }
    }
  }
  // Push on the free list (doubly linked: a free slot's hash field is its prev).
  std::uint32_t old = sh.free_head;
  slot_link& me = t.link(s, idx);
  w.save(sl, sizeof(slot_hdr));
  w.save(&me, sizeof me);
  w.save_field(sh.free_head);
  w.save_field(sh.count);
  w.save_field(sh.bytes);
  if (old != nil) {
    w.save_field(t.link(s, old).hash);
    st(t.link(s, old).hash, idx);
  }
  st(sh.bytes, sh.bytes - (static_cast<std::uint64_t>(sl->klen) + sl->vlen));
  st(sh.count, sh.count - 1);
  st(sl->live, 0);
  st(me.next, old);
  st(me.hash, nil);
  st(sh.free_head, idx);
}

// The entry to evict from stripe s (never exclude), or nil.
std::uint32_t pick_victim(const impl_t& t, std::uint32_t s, std::int64_t now,
                          std::uint32_t exclude) {
  std::uint32_t best = nil;
  std::uint64_t best_score = UINT64_MAX;
  for (std::uint32_t i = 0; i < t.spp; ++i) {
    slot_hdr* sl = t.slot(s, i);
    if (sl->live == 0 || i == exclude) {
      continue;
    }
    if (impl_t::expired(sl, now)) {
      return i;  // an expired entry is always the first to go
    }
    std::uint64_t score = UINT64_MAX;
    if (t.policy == eviction::lru) {
      score = ld(sl->atime);
    } else if (t.policy == eviction::nearest_expiry && sl->expire_ns != 0) {
      score = static_cast<std::uint64_t>(sl->expire_ns);
    } else {
      continue;
    }
    if (best == nil || score < best_score) {
      best = i;
      best_score = score;
    }
  }
  return best;
}

// Makes room for need_slot / extra bytes in stripe s, evicting by policy.
bool make_room(const impl_t& t, writer& w, std::uint32_t s, bool need_slot,
               std::uint64_t extra_bytes, std::int64_t now, std::uint32_t exclude) {
  stripe_hdr& sh = t.stripe(s);
  for (;;) {
    bool slot_ok = !need_slot || (sh.free_head != nil && t.total_count() < t.max_entries);
    bool bytes_ok = !t.bytes_bind || t.total_bytes() + extra_bytes <= t.max_bytes;
    if (slot_ok && bytes_ok) {
      return true;
    }
    std::uint32_t v = nil;
    // Expired entries go first, whatever the policy.
    v = pick_victim(t, s, now, exclude);
    if (v == nil) {
      return false;
    }
    if (t.policy == eviction::none && !impl_t::expired(t.slot(s, v), now)) {
      return false;
    }
    // Each eviction commits on its own: one insert may evict many small
    // entries, more than one journal holds. An eviction is a complete change,
    // so a crash after it leaves a consistent table (without the victim).
    free_slot(t, w, s, v);
    w.commit();
  }
}

// Takes a slot from the pool and links a new entry. Caller made room.
void link_new(const impl_t& t, writer& w, std::uint32_t s, std::uint64_t h, std::string_view key,
              std::string_view value, std::int64_t expire) {
  stripe_hdr& sh = t.stripe(s);
  bool ordered = t.type == table_type::ordered_set;
  // Slots are taken in free-list order, so entries inserted together sit
  // together: a reader walking them in that order stays on a few pages.
  std::uint32_t idx = sh.free_head;
  slot_hdr* sl = t.slot(s, idx);
  slot_link& me = t.link(s, idx);
  w.save(sl, t.payload_off);  // header (+ forward pointers)
  w.save(&me, sizeof me);
  std::uint32_t prev = me.hash;
  std::uint32_t next = me.next;
  if (prev == nil) {
    w.save_field(sh.free_head);
    st(sh.free_head, next);
  } else {
    w.save_field(t.link(s, prev).next);
    st(t.link(s, prev).next, next);
  }
  if (next != nil) {
    w.save_field(t.link(s, next).hash);
    st(t.link(s, next).hash, prev);
  }
  std::memcpy(t.key_ptr(sl), key.data(), key.size());
  std::memcpy(t.key_ptr(sl) + key.size(), value.data(), value.size());
  st(me.hash, static_cast<std::uint32_t>(h >> 32));
  st(sl->klen, key.size());
  st(sl->vlen, value.size());
  st(sl->expire_ns, expire);
  st(sl->live, 1);
  if (t.policy == eviction::lru) {
    st(sl->atime, __atomic_add_fetch(&sh.lru_clock, 1, __ATOMIC_RELAXED));
  }
  if (ordered) {
    std::uint32_t update[max_level];
    t.find_ordered(key, update);
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
  } else {
    std::uint32_t* b = t.bucket_of(s, h);
    st(me.next, *b);
    w.save_field(*b);
    st(*b, idx);
  }
  w.save_field(sh.count);
  w.save_field(sh.bytes);
  st(sh.count, sh.count + 1);
  st(sh.bytes, sh.bytes + key.size() + value.size());
}

// Replaces the value of slot idx in place (readers retry meanwhile).
void overwrite(const impl_t& t, writer& w, std::uint32_t s, std::uint32_t idx,
               std::string_view value, std::int64_t expire) {
  stripe_hdr& sh = t.stripe(s);
  slot_hdr* sl = t.slot(s, idx);
  char* v = t.key_ptr(sl) + sl->klen;
  w.save(sl, sizeof(slot_hdr));
  w.save(v, value.size());
  w.save_field(sh.bytes);
  st(sh.bytes, sh.bytes - sl->vlen + value.size());
  std::memcpy(v, value.data(), value.size());
  st(sl->vlen, value.size());
  st(sl->expire_ns, expire);
  if (t.policy == eviction::lru) {
    st(sl->atime, __atomic_add_fetch(&sh.lru_clock, 1, __ATOMIC_RELAXED));
  }
}

std::int64_t expiry_for(std::chrono::milliseconds ttl) {
  if (ttl.count() <= 0) {
    return 0;
  }
  return core::monotonic_ns() + static_cast<std::int64_t>(ttl.count()) * 1'000'000;
}

}  // namespace

// ---------------------------------------------------------------------------

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

std::string default_node() {
  const char* n = std::getenv("OTPD_NODE");
  return (n != nullptr && valid_node_name(n)) ? std::string(n) : std::string("default");
}

namespace {
bool valid_name(std::string_view s, bool allow_dot) {
  if (s.empty() || s.size() > 64) {
    return false;
  }
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || (allow_dot && c == '.');
    if (!ok) {
      return false;
    }
  }
  return true;
}
}  // namespace

bool valid_node_name(std::string_view node) noexcept {
  return valid_name(node, false);
}
bool valid_table_name(std::string_view name) noexcept {
  return valid_name(name, true);
}
std::string segment_name(std::string_view node, std::string_view name) {
  return fmt::format("otpd.{}.{}", node, name);
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
  bool ordered = o.type == table_type::ordered_set;
  std::uint32_t stripes = 1;
  if (!ordered) {
    stripes = o.stripes != 0 ? pow2_at_least(o.stripes)
                             : std::min<std::uint32_t>(64, pow2_at_least(o.max_entries / 64 + 1));
    if (o.stripes == 0 && stripes > 1 && o.max_entries < stripes * 64) {
      stripes >>= 1;
    }
  }
  std::uint64_t spp = stripes == 1
                          ? o.max_entries
                          : (static_cast<std::uint64_t>(o.max_entries) * 5 / 4) / stripes + 16;
  std::uint64_t bpp = ordered ? 0 : pow2_at_least(spp);
  std::uint32_t payload_off = sizeof(slot_hdr) + (ordered ? 4 * max_level : 0);
  std::uint64_t slot_size = round_up(payload_off + o.max_item_bytes, 32);
  if (spp * stripes >= head_node) {
    return errc::invalid_argument;
  }
  std::uint64_t journal_bytes = round_up(sizeof(journal_hdr) + 2 * (sizeof(undo_rec) + slot_size) +
                                             (4 * max_level + 64) * (sizeof(undo_rec) + 8),
                                         64);
  std::uint64_t stripes_off = round_up(sizeof(seg_header), 4096);
  std::uint64_t buckets_off = round_up(stripes_off + stripes * sizeof(stripe_hdr), 64);
  std::uint64_t links_off = round_up(buckets_off + stripes * bpp * 4, 64);
  std::uint64_t slots_off = round_up(links_off + stripes * spp * sizeof(slot_link), 64);
  std::uint64_t journals_off = slots_off + stripes * spp * slot_size;
  std::uint64_t total = journals_off + stripes * journal_bytes;

  std::string seg_name = segment_name(node, name);
  auto seg = detail::create_segment(seg_name, total);
  if (!seg) {
    return seg.error();
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
  h->stripes = stripes;
  h->slots_per_stripe = static_cast<std::uint32_t>(spp);
  h->buckets_per_stripe = static_cast<std::uint32_t>(bpp);
  h->slot_size = static_cast<std::uint32_t>(slot_size);
  h->payload_off = payload_off;
  h->max_item_bytes = o.max_item_bytes;
  h->max_entries = o.max_entries;
  h->journal_bytes = static_cast<std::uint32_t>(journal_bytes);
  std::uint64_t cap = static_cast<std::uint64_t>(o.max_entries) * o.max_item_bytes;
  h->max_bytes = (o.max_bytes == 0 || o.max_bytes > cap) ? cap : o.max_bytes;
  h->segment_size = total;
  h->stripes_off = stripes_off;
  h->buckets_off = buckets_off;
  h->links_off = links_off;
  h->slots_off = slots_off;
  h->journals_off = journals_off;
  h->owner_pid = ::getpid();
  h->creator_pid = ::getpid();
  h->hash_seed = random_seed();
  std::snprintf(h->node, sizeof h->node, "%.*s", static_cast<int>(node.size()), node.data());
  std::snprintf(h->name, sizeof h->name, "%.*s", static_cast<int>(name.size()), name.data());
  p->bind();
  for (std::uint32_t s = 0; s < stripes; ++s) {
    stripe_hdr& sh = p->stripe(s);
    detail::init_robust_mutex(&sh.mutex);
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
  if (bpp != 0) {
    std::memset(p->buckets, 0xFF, stripes * bpp * 4);
  }
  // Publish: openers wait for the magic before they trust anything else.
  __atomic_store_n(&h->magic, table_magic, __ATOMIC_RELEASE);
  return table(std::move(p));
}

Result<table> table::open(std::string_view node, std::string_view name) {
  if (!valid_node_name(node) || !valid_table_name(name)) {
    return errc::invalid_argument;
  }
  auto seg = detail::open_segment(segment_name(node, name));
  // A creator between shm_open and ftruncate: give it the same time as a
  // creator that has not published its magic yet.
  auto until = core::deadline::after(core::milliseconds(ready_timeout_ms));
  while (!seg && seg.error() == errc::busy && !until.expired()) {
    ::sched_yield();
    seg = detail::open_segment(segment_name(node, name));
  }
  if (!seg) {
    return seg.error();
  }
  if ((*seg)->size() < sizeof(seg_header)) {
    return errc::malformed;
  }
  auto* h = reinterpret_cast<seg_header*>((*seg)->base());
  if (!detail::wait_ready(&h->magic, table_magic, ready_timeout_ms)) {
    return errc::busy;
  }
  if (h->version != layout_version || h->segment_size != (*seg)->size()) {
    core::log_error(
        "shm_table {}: segment {} has layout version {} and {} bytes; this build reads version {} "
        "(a segment of another otpd build: remove_stale() at node start removes it)",
        name, segment_name(node, name), h->version, (*seg)->size(), layout_version);
    return errc::malformed;
  }
  auto p = std::make_unique<impl>();
  p->seg = std::move(*seg);
  p->base = p->seg->base();
  p->node = node;
  p->name = name;
  p->bind();
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
  return detail::remove_segment(segment_name(node, name));
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

// --- writes ----------------------------------------------------------------

namespace {

core::Result<void> check_write(const impl_t& t, std::string_view key, std::string_view value) {
  if (!t.writable()) {
    return errc::access_denied;
  }
  if (key.empty() || key.size() > 0xFFFF || key.size() + value.size() > t.max_item) {
    return key.empty() ? errc::invalid_argument : errc::too_large;
  }
  return {};
}

// insert / insert_new: 1 inserted or replaced, 0 present (insert_new).
core::Result<bool> put(const impl_t& t, std::string_view key, std::string_view value,
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
  std::uint32_t idx = t.find(s, h, key);
  if (idx != nil) {
    slot_hdr* sl = t.slot(s, idx);
    if (only_new && !impl_t::expired(sl, now)) {
      return false;
    }
    std::uint64_t grow = value.size() > sl->vlen ? value.size() - sl->vlen : 0;
    if (grow != 0 && !make_room(t, w, s, false, grow, now, idx)) {
      w.rollback();
      return errc::table_full;
    }
    overwrite(t, w, s, idx, value, expire);
  } else {
    if (!make_room(t, w, s, true, key.size() + value.size(), now, nil)) {
      w.rollback();
      return errc::table_full;
    }
    link_new(t, w, s, h, key, value, expire);
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
  std::uint32_t idx = t.find(s, h, key);
  if (idx == nil) {
    return std::optional<std::string>{};
  }
  slot_hdr* sl = t.slot(s, idx);
  std::optional<std::string> out;
  if (!impl::expired(sl, core::monotonic_ns())) {
    out = std::string(t.value_of(sl));
  }
  free_slot(t, w, s, idx);
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
  std::uint32_t idx = t.find(s, h, key);
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
    overwrite(t, w, s, idx, std::string_view(buf, 8), sl->expire_ns);
  } else {
    value = static_cast<std::int64_t>(static_cast<std::uint64_t>(initial) +
                                      static_cast<std::uint64_t>(incr));
    encode(value);
    std::int64_t expire = expiry_for(ttl);
    if (idx != nil) {
      overwrite(t, w, s, idx, std::string_view(buf, 8), expire);
    } else {
      if (!make_room(t, w, s, true, key.size() + 8, now, nil)) {
        w.rollback();
        return errc::table_full;
      }
      link_new(t, w, s, h, key, std::string_view(buf, 8), expire);
    }
  }
  w.commit();
  return value;
}

namespace {

// Live slot indices of stripe s in table order. Caller holds the lock.
std::vector<std::uint32_t> slots_in_order(const impl_t& t, std::uint32_t s) {
  std::vector<std::uint32_t> out;
  if (t.type == table_type::ordered_set) {
    std::uint32_t x = t.stripe(s).head_fwd[0];
    while (x != nil && x < t.spp && out.size() <= t.spp) {
      out.push_back(x);
      x = t.fwd(s, x)[0];
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
core::Result<std::size_t> delete_where(const impl_t& t,
                                       const std::function<bool(slot_hdr*, std::int64_t)>& match) {
  if (!t.writable()) {
    return errc::access_denied;
  }
  std::size_t n = 0;
  for (std::uint32_t s = 0; s < t.stripes; ++s) {
    writer w(t, s);
    if (!w.ok()) {
      return w.error();
    }
    std::int64_t now = core::monotonic_ns();
    for (std::uint32_t idx : slots_in_order(t, s)) {
      if (match(t.slot(s, idx), now)) {
        free_slot(t, w, s, idx);
        w.commit();
        ++n;
      }
    }
  }
  return n;
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
  const impl& t = *impl_;
  std::size_t n = 0;
  for (std::uint32_t s = 0; s < t.stripes; ++s) {
    writer w(t, s);
    if (!w.ok()) {
      return w.error();
    }
    std::int64_t now = core::monotonic_ns();
    for (std::uint32_t idx : slots_in_order(t, s)) {
      if (impl::expired(t.slot(s, idx), now)) {
        free_slot(t, w, s, idx);
        w.commit();
        ++n;
      }
    }
  }
  return n;
}

Result<void> table::clear() {
  auto r = delete_where(*impl_, [](slot_hdr*, std::int64_t) { return true; });
  if (!r) {
    return r.error();
  }
  return {};
}

// --- reads -----------------------------------------------------------------

// The general read: any table type, retried until it saw a stable stripe.
bool table::impl::lookup_slow(std::uint64_t h, std::string_view key, std::string& out) const {
  std::uint32_t s = stripe_of(h);
  bool found = false;
  slot_hdr* hit = nullptr;
  std::int64_t now = 0;
  read_stripe(s, [&] {
    found = false;
    std::uint32_t idx = find(s, h, key);
    if (idx == nil) {
      return;
    }
    slot_hdr* sl = slot(s, idx);
    if (ld(sl->expire_ns) != 0) {
      if (now == 0) {
        now = core::monotonic_ns();
      }
      if (impl::expired(sl, now)) {
        return;
      }
    }
    std::string_view v = value_of(sl);
    out.assign(v.data(), v.size());
    found = true;
    hit = sl;
  });
  if (found) {
    touch(s, hit);
  }
  return found;
}

// The hot path: a set, one optimistic pass with no call besides the value's
// copy, and few enough instructions that the CPU runs the next lookup's
// loads while this one's slot is still on its way from memory. Anything
// unusual (a write in flight, an overlapped write, a TTL, LRU bookkeeping,
// an ordered_set) takes the general path above.
bool table::lookup_into(std::string_view key, std::string& out) const {
  const impl& t = *impl_;
  if (key.empty() || key.size() > t.max_item) {
    return false;
  }
  std::uint64_t h = t.hash(key);
  if (t.type != table_type::set || t.policy == eviction::lru) [[unlikely]] {
    return t.lookup_slow(h, key, out);
  }
  auto s = static_cast<std::uint32_t>(h & t.smask);
  const stripe_hdr& sh = t.stripe(s);
  std::uint64_t q1 = __atomic_load_n(&sh.seq, __ATOMIC_ACQUIRE);
  std::uint32_t idx = t.find_set(s, h, key);
  if (idx == nil) {
    std::atomic_thread_fence(std::memory_order_acquire);
    if ((q1 & 1) == 0 && ld(sh.seq) == q1) {
      return false;
    }
    return t.lookup_slow(h, key, out);
  }
  const slot_hdr* sl = t.slot(s, idx);
  if (ld(sl->expire_ns) != 0) {
    return t.lookup_slow(h, key, out);
  }
  // Lengths clamped to the slot: a torn read copies garbage, never past it.
  std::uint32_t v =
      std::min<std::uint32_t>(ld(sl->vlen), t.max_item - static_cast<std::uint32_t>(key.size()));
  out.resize(v);
  std::memcpy(out.data(), reinterpret_cast<const char*>(sl) + t.payload_off + key.size(), v);
  std::atomic_thread_fence(std::memory_order_acquire);
  if ((q1 & 1) != 0 || ld(sh.seq) != q1) [[unlikely]] {
    return t.lookup_slow(h, key, out);
  }
  return true;
}

// Stages of a batch: every key's bucket is requested, then every chain's
// link, then every candidate slot, each stage while the previous one's loads
// are still arriving; the final pass is lookup_into over cached lines. The
// stages only prefetch (indices bounds-checked, nothing trusted), so a write
// racing them costs a miss, never a wrong answer.
Result<std::size_t> table::lookup_many(std::span<const std::string_view> keys,
                                       std::span<std::string> out, std::span<bool> found) const {
  if (out.size() < keys.size() || found.size() < keys.size()) {
    return errc::invalid_argument;
  }
  const impl& t = *impl_;
  std::size_t hits = 0;
  constexpr std::size_t batch = 16;
  bool staged = t.type == table_type::set && t.policy != eviction::lru;
  for (std::size_t base = 0; base < keys.size(); base += batch) {
    std::size_t n = std::min(batch, keys.size() - base);
    if (staged) {
      std::uint64_t h[batch];
      std::uint32_t idx[batch];
      for (std::size_t i = 0; i < n; ++i) {
        h[i] = t.hash(keys[base + i]);
        auto s = static_cast<std::uint32_t>(h[i] & t.smask);
        __builtin_prefetch(t.bucket_of(s, h[i]));
      }
      for (std::size_t i = 0; i < n; ++i) {
        auto s = static_cast<std::uint32_t>(h[i] & t.smask);
        idx[i] = ld(*t.bucket_of(s, h[i]));
        if (idx[i] < t.spp) {
          __builtin_prefetch(&t.link(s, idx[i]));
        }
      }
      for (std::size_t i = 0; i < n; ++i) {
        auto s = static_cast<std::uint32_t>(h[i] & t.smask);
        auto h32 = static_cast<std::uint32_t>(h[i] >> 32);
        std::uint32_t x = idx[i];
        for (std::uint32_t steps = 0; x < t.spp && steps < 8; ++steps) {
          const slot_link& l = t.link(s, x);
          if (ld(l.hash) == h32) {
            // The header, the key and the start of the value: a big slot's
            // tail is not worth evicting other lines for.
            const char* p = reinterpret_cast<const char*>(t.slot(s, x));
            for (std::uint32_t off = 0; off < std::min<std::uint32_t>(t.slot_size, 256);
                 off += 64) {
              __builtin_prefetch(p + off);
            }
            break;
          }
          x = ld(l.next);
        }
      }
    }
    for (std::size_t i = 0; i < n; ++i) {
      bool f = lookup_into(keys[base + i], out[base + i]);
      found[base + i] = f;
      hits += f ? 1 : 0;
    }
  }
  return hits;
}

std::optional<std::string> table::lookup(std::string_view key) const {
  std::string out;
  if (!lookup_into(key, out)) {
    return std::nullopt;
  }
  return out;
}

bool table::member(std::string_view key) const {
  const impl& t = *impl_;
  if (key.empty() || key.size() > t.max_item) {
    return false;
  }
  std::uint64_t h = t.hash(key);
  std::uint32_t s = t.stripe_of(h);
  bool found = false;
  t.read_stripe(s, [&] {
    std::uint32_t idx = t.find(s, h, key);
    found = idx != nil && !impl::expired(t.slot(s, idx), core::monotonic_ns());
  });
  return found;
}

namespace {

// A consistent copy of the live entries of stripe s (in table order).
std::vector<entry> snapshot(const impl_t& t, std::uint32_t s) {
  std::vector<entry> out;
  t.read_stripe(
      s,
      [&] {
        out.clear();
        std::int64_t now = core::monotonic_ns();
        if (t.type == table_type::ordered_set) {
          std::uint32_t x = ld(t.stripe(s).head_fwd[0]);
          for (std::uint32_t steps = 0; x < t.spp && steps <= t.spp; ++steps) {
            slot_hdr* sl = t.slot(s, x);
            if (!impl_t::expired(sl, now)) {
              out.push_back(t.copy_entry(sl, now));
            }
            x = ld(t.fwd(s, x)[0]);
          }
        } else {
          for (std::uint32_t i = 0; i < t.spp; ++i) {
            slot_hdr* sl = t.slot(s, i);
            if (ld(sl->live) != 0 && !impl_t::expired(sl, now)) {
              out.push_back(t.copy_entry(sl, now));
            }
          }
        }
      },
      4);
  return out;
}

}  // namespace

std::vector<entry> table::select(const predicate& pred) const {
  std::vector<entry> out;
  for (std::uint32_t s = 0; s < impl_->stripes; ++s) {
    for (auto& e : snapshot(*impl_, s)) {
      if (pred(e.key, e.value)) {
        out.push_back(std::move(e));
      }
    }
  }
  return out;
}

void table::fold(const std::function<void(const entry&)>& fn) const {
  for (std::uint32_t s = 0; s < impl_->stripes; ++s) {
    for (const auto& e : snapshot(*impl_, s)) {
      fn(e);
    }
  }
}

Result<std::optional<std::string>> table::first() const {
  auto r = range("", "", 1);
  if (!r) {
    return r.error();
  }
  if (r->empty()) {
    return std::optional<std::string>{};
  }
  return std::optional<std::string>(std::move(r->front().key));
}

Result<std::optional<std::string>> table::last() const {
  const impl& t = *impl_;
  if (t.type != table_type::ordered_set) {
    return errc::invalid_argument;
  }
  // The last live key: walk the top levels to the end, then level 0 keeping
  // the last unexpired one (expired tail entries are skipped).
  std::optional<std::string> out;
  t.read_stripe(
      0,
      [&] {
        out.reset();
        std::int64_t now = core::monotonic_ns();
        std::uint32_t x = ld(t.stripe(0).head_fwd[0]);
        for (std::uint32_t steps = 0; x < t.spp && steps <= t.spp; ++steps) {
          slot_hdr* sl = t.slot(0, x);
          if (!impl::expired(sl, now)) {
            out = std::string(t.key_of(sl));
          }
          x = ld(t.fwd(0, x)[0]);
        }
      },
      4);
  return out;
}

Result<std::optional<std::string>> table::next(std::string_view key) const {
  const impl& t = *impl_;
  if (t.type != table_type::ordered_set) {
    return errc::invalid_argument;
  }
  std::optional<std::string> out;
  t.read_stripe(
      0,
      [&] {
        out.reset();
        std::int64_t now = core::monotonic_ns();
        std::uint32_t update[max_level];
        t.find_ordered(key, update);
        std::uint32_t x = ld(t.fwd(0, update[0])[0]);
        for (std::uint32_t steps = 0; x < t.spp && steps <= t.spp; ++steps) {
          slot_hdr* sl = t.slot(0, x);
          if (!impl::expired(sl, now) && compare_keys(t.key_of(sl), key) > 0) {
            out = std::string(t.key_of(sl));
            return;
          }
          x = ld(t.fwd(0, x)[0]);
        }
      },
      4);
  return out;
}

Result<std::vector<entry>> table::range(std::string_view lo, std::string_view hi,
                                        std::size_t limit) const {
  const impl& t = *impl_;
  if (t.type != table_type::ordered_set) {
    return errc::invalid_argument;
  }
  std::vector<entry> out;
  t.read_stripe(
      0,
      [&] {
        out.clear();
        std::int64_t now = core::monotonic_ns();
        std::uint32_t update[max_level];
        t.find_ordered(lo, update);
        std::uint32_t x = ld(t.fwd(0, update[0])[0]);
        for (std::uint32_t steps = 0; x < t.spp && steps <= t.spp && out.size() < limit; ++steps) {
          slot_hdr* sl = t.slot(0, x);
          std::string_view k = t.key_of(sl);
          if (!hi.empty() && compare_keys(k, hi) >= 0) {
            break;
          }
          if (!impl::expired(sl, now)) {
            out.push_back(t.copy_entry(sl, now));
          }
          x = ld(t.fwd(0, x)[0]);
        }
      },
      4);
  return out;
}

std::uint64_t table::size() const noexcept {
  return impl_->total_count();
}
std::uint64_t table::memory() const noexcept {
  return impl_->seg_size;
}
std::uint64_t table::repairs() const noexcept {
  return impl_->repairs;
}

table_info table::info() const {
  const impl& t = *impl_;
  table_info i;
  i.node = t.node;
  i.name = t.name;
  i.type = t.type;
  i.access = t.access;
  i.policy = t.policy;
  i.size = t.total_count();
  i.payload_bytes = t.total_bytes();
  i.memory = t.seg_size;
  i.max_entries = t.max_entries;
  i.max_bytes = t.max_bytes;
  i.max_item_bytes = t.max_item;
  i.stripes = t.stripes;
  i.owner = ld(t.hdr->owner_pid);
  i.owner_alive = pid_alive_not_zombie(i.owner);
  i.repairs = ld(t.hdr->repairs);
  return i;
}

// --- verify ----------------------------------------------------------------

namespace {

std::string check_stripe(const impl_t& t, std::uint32_t s) {
  stripe_hdr& sh = t.stripe(s);
  if ((sh.seq & 1) != 0) {
    return fmt::format("stripe {}: sequence {} odd while locked", s, sh.seq);
  }
  if (t.journal(s)->n != 0) {
    return fmt::format("stripe {}: uncommitted journal", s);
  }
  std::vector<std::uint8_t> seen(t.spp, 0);  // 1 = indexed, 2 = free
  std::uint64_t count = 0;
  std::uint64_t bytes = 0;
  auto check_entry = [&](std::uint32_t idx) -> std::string {
    slot_hdr* sl = t.slot(s, idx);
    if (sl->live != 1) {
      return fmt::format("stripe {}: indexed slot {} not live", s, idx);
    }
    if (sl->klen == 0 || static_cast<std::uint64_t>(sl->klen) + sl->vlen > t.max_item) {
      return fmt::format("stripe {}: slot {} has bad lengths {}+{}", s, idx, sl->klen, sl->vlen);
    }
    ++count;
    bytes += static_cast<std::uint64_t>(sl->klen) + sl->vlen;
    return {};
  };
  if (t.type == table_type::ordered_set) {
    std::uint32_t x = sh.head_fwd[0];
    std::string prev;
    bool first = true;
    while (x != nil) {
      if (x >= t.spp || seen[x] != 0) {
        return fmt::format("stripe {}: level 0 broken at {}", s, x);
      }
      seen[x] = 1;
      if (auto e = check_entry(x); !e.empty()) {
        return e;
      }
      slot_hdr* sl = t.slot(s, x);
      std::string k(t.key_of(sl));
      if (!first && compare_keys(prev, k) >= 0) {
        return fmt::format("stripe {}: keys out of order at slot {}", s, x);
      }
      if (sl->level == 0 || sl->level > sh.level || sl->level > max_level) {
        return fmt::format("stripe {}: slot {} has level {}", s, x, sl->level);
      }
      first = false;
      prev = std::move(k);
      x = t.fwd(s, x)[0];
    }
    for (std::uint32_t l = 1; l < max_level; ++l) {
      std::uint32_t y = sh.head_fwd[l];
      std::string p;
      bool f = true;
      std::uint32_t steps = 0;
      while (y != nil) {
        if (l >= sh.level || y >= t.spp || seen[y] != 1 || t.slot(s, y)->level <= l ||
            ++steps > t.spp) {
          return fmt::format("stripe {}: level {} broken at {}", s, l, y);
        }
        std::string k(t.key_of(t.slot(s, y)));
        if (!f && compare_keys(p, k) >= 0) {
          return fmt::format("stripe {}: level {} out of order", s, l);
        }
        f = false;
        p = std::move(k);
        y = t.fwd(s, y)[l];
      }
    }
  } else {
    for (std::uint32_t b = 0; b < t.bpp; ++b) {
      std::uint32_t x = t.buckets[static_cast<std::uint64_t>(s) * t.bpp + b];
      std::vector<std::string> keys;
      while (x != nil) {
        if (x >= t.spp || seen[x] != 0) {
          return fmt::format("stripe {}: chain of bucket {} broken at {}", s, b, x);
        }
        seen[x] = 1;
        if (auto e = check_entry(x); !e.empty()) {
          return e;
        }
        slot_hdr* sl = t.slot(s, x);
        std::string_view k = t.key_of(sl);
        std::uint64_t h = t.hash(k);
        if ((h & t.smask) != s || ((h >> 16) & t.bmask) != b ||
            static_cast<std::uint32_t>(h >> 32) != t.link(s, x).hash) {
          return fmt::format("stripe {}: slot {} in the wrong bucket", s, x);
        }
        for (const auto& o : keys) {
          if (o == k) {
            return fmt::format("stripe {}: duplicate key in bucket {}", s, b);
          }
        }
        keys.emplace_back(k);
        x = t.link(s, x).next;
      }
    }
  }
  std::uint32_t f = sh.free_head;
  std::uint32_t fprev = nil;
  std::uint64_t nfree = 0;
  while (f != nil) {
    if (f >= t.spp || seen[f] != 0) {
      return fmt::format("stripe {}: free list broken at {}", s, f);
    }
    if (t.link(s, f).hash != fprev) {
      return fmt::format("stripe {}: free slot {} has a wrong back link", s, f);
    }
    fprev = f;
    seen[f] = 2;
    if (t.slot(s, f)->live != 0) {
      return fmt::format("stripe {}: free slot {} marked live", s, f);
    }
    ++nfree;
    f = t.link(s, f).next;
  }
  if (count + nfree != t.spp) {
    return fmt::format("stripe {}: {} indexed + {} free != {} slots (leak)", s, count, nfree,
                       t.spp);
  }
  for (std::uint32_t i = 0; i < t.spp; ++i) {
    if (seen[i] == 0 || (seen[i] == 2) != (t.slot(s, i)->live == 0)) {
      return fmt::format("stripe {}: slot {} neither indexed nor free", s, i);
    }
  }
  if (count != sh.count || bytes != sh.bytes) {
    return fmt::format("stripe {}: counters {} entries / {} bytes, found {} / {}", s, sh.count,
                       sh.bytes, count, bytes);
  }
  return {};
}

}  // namespace

Result<void> table::verify(std::string* problem) const {
  const impl& t = *impl_;
  auto fail = [&](std::string why) -> Result<void> {
    if (problem != nullptr) {
      *problem = std::move(why);
    }
    return errc::malformed;
  };
  if (__atomic_load_n(&t.hdr->magic, __ATOMIC_ACQUIRE) != table_magic) {
    return fail("bad magic");
  }
  for (std::uint32_t s = 0; s < t.stripes; ++s) {
    if (auto r = t.lock(s); !r) {
      return fail(fmt::format("stripe {}: cannot lock: {}", s, r.error().message()));
    }
    std::string why = check_stripe(t, s);
    t.unlock(s);
    if (!why.empty()) {
      return fail(why);
    }
  }
  return {};
}

// --- the node's tables -----------------------------------------------------

std::vector<std::string> list_tables(std::string_view node) {
  std::vector<std::string> out;
  std::string prefix = fmt::format("otpd.{}.", node);
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm", ec)) {
    std::string f = e.path().filename().string();
    if (f.size() > prefix.size() && f.compare(0, prefix.size(), prefix) == 0) {
      out.push_back(f.substr(prefix.size()));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> remove_stale(std::string_view node) {
  std::vector<std::string> removed;
  for (const auto& name : list_tables(node)) {
    std::string seg_name = segment_name(node, name);
    auto seg = detail::open_segment(seg_name);
    bool stale = false;
    if (!seg) {
      // Created but never sized: its creator died between shm_open and ftruncate.
      stale = seg.error() == errc::busy;
    } else if ((*seg)->size() < sizeof(seg_header)) {
      stale = true;
    } else {
      auto* h = reinterpret_cast<seg_header*>((*seg)->base());
      std::uint64_t m = __atomic_load_n(&h->magic, __ATOMIC_ACQUIRE);
      if (m == 0) {
        // Not published: stale once its creator is gone.
        stale = !pid_alive_not_zombie(h->creator_pid);
      } else {
        stale =
            m != table_magic || h->version != layout_version || h->segment_size != (*seg)->size();
      }
    }
    if (stale && detail::remove_segment(seg_name)) {
      removed.push_back(name);
    }
  }
  return removed;
}

std::size_t remove_all(std::string_view node) {
  std::size_t n = 0;
  for (const auto& name : list_tables(node)) {
    if (detail::remove_segment(segment_name(node, name))) {
      ++n;
    }
  }
  std::string prefix = fmt::format("otpd-pt.{}.", node);
  std::error_code ec;
  std::vector<std::string> pts;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm", ec)) {
    std::string f = e.path().filename().string();
    if (f.compare(0, prefix.size(), prefix) == 0) {
      pts.push_back(f);
    }
  }
  for (const auto& f : pts) {
    if (detail::remove_segment(f)) {
      ++n;
    }
  }
  return n;
}

}  // namespace otpd::shm_table
