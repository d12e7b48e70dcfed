// table::verify(): locks each stripe in turn (repairing it if a writer died
// there) and checks every invariant the writers keep: the index (chains in
// the right buckets, or a skip list in key order on every level), the free
// list, that every slot is either indexed or free, and the counters.

#include <cstdint>
#include <string>
#include <vector>

#include "layout.hpp"
#include "ordered_index.hpp"
#include "table_impl.hpp"
#include <fmt/format.h>

#include <otpd/shm_table/table.hpp>

namespace otpd::shm_table {

using core::errc;
using namespace detail;

namespace {

std::string check_stripe(const table::impl& t, std::uint32_t s) {
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
    if (sh.level == 0 || sh.level > max_level) {
      return fmt::format("stripe {}: skip list level {} out of range", s, sh.level);
    }
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
  auto fail = [&](const std::string& why) -> Result<void> {
    if (problem != nullptr) {
      *problem = why;
    }
    return {errc::corrupt, fmt::format("shm_table {}: {}", t.name, why)};
  };
  if (t.damaged()) {
    return fail(fmt::format("segment shrunk to {} bytes under this process (it maps {})",
                            t.seg->file_size(), t.seg_size));
  }
  if (__atomic_load_n(&t.hdr->magic, __ATOMIC_ACQUIRE) != table_magic) {
    return fail("bad magic");
  }
  for (std::uint32_t s = 0; s < t.stripes; ++s) {
    if (auto r = t.lock(s); !r) {
      if (problem != nullptr) {
        *problem = r.message();
      }
      return r.fail();
    }
    std::string why = check_stripe(t, s);
    t.unlock(s);
    if (t.damaged()) {
      return fail(fmt::format("segment shrunk to {} bytes under this process (it maps {})",
                              t.seg->file_size(), t.seg_size));
    }
    if (!why.empty()) {
      return fail(why);
    }
  }
  return {};
}

}  // namespace otpd::shm_table
