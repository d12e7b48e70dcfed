// Hostile input to shm tables and the persistent_term area, on real
// segments: another user (nobody, from a forked child) pre-creating a
// segment's name or going after a live one; a header crafted to point
// outside the segment; random bytes written over a live segment; a writer
// stopped by SIGSTOP inside its write; garbage in a lock word; an undo
// record whose bounds wrap; a segment shrunk under its readers. Every case
// ends in a refusal or in errc::corrupt / errc::busy, never in an access
// outside the mapping, a hang or a crash (the ASan build checks the first).

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "layout.hpp"
#include "shm_fixture.hpp"
#include <gtest/gtest.h>

#include <otpd/core/spawn.hpp>
#include <otpd/core/unique_fd.hpp>
#include <otpd/shm_table/codec.hpp>
#include <otpd/shm_table/fault_injection.hpp>
#include <otpd/shm_table/persistent_term.hpp>
#include <otpd/shm_table/table.hpp>

namespace otpd::shm_table::test {
namespace {

using namespace std::chrono_literals;
using core::errc;

// A segment mapped behind the library's back, as another process would.
struct raw_segment {
  core::unique_fd fd;
  char* p = nullptr;
  std::size_t n = 0;

  explicit raw_segment(const std::string& name) {
    fd.reset(::shm_open(("/" + name).c_str(), O_RDWR, 0));
    EXPECT_TRUE(fd) << name << ": " << std::strerror(errno);
    struct stat st {};
    if (!fd || ::fstat(fd.get(), &st) != 0) {
      return;
    }
    n = static_cast<std::size_t>(st.st_size);
    void* m = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    EXPECT_NE(m, MAP_FAILED);
    p = m == MAP_FAILED ? nullptr : static_cast<char*>(m);
  }
  raw_segment(const raw_segment&) = delete;
  raw_segment& operator=(const raw_segment&) = delete;
  raw_segment(raw_segment&&) = delete;
  raw_segment& operator=(raw_segment&&) = delete;
  ~raw_segment() {
    if (p != nullptr) {
      ::munmap(p, n);
    }
  }
  detail::seg_header& hdr() const { return *reinterpret_cast<detail::seg_header*>(p); }
  pthread_mutex_t& mutex(std::uint32_t s) const {
    return *reinterpret_cast<pthread_mutex_t*>(p + hdr().stripes_off +
                                               s * sizeof(detail::stripe_hdr));
  }
  detail::stripe_hdr& stripe(std::uint32_t s) const {
    return *reinterpret_cast<detail::stripe_hdr*>(p + hdr().stripes_off +
                                                  s * sizeof(detail::stripe_hdr));
  }
};

struct nobody_ids {
  uid_t uid = 0;
  gid_t gid = 0;
};

nobody_ids nobody() {
  const passwd* pw = ::getpwnam("nobody");
  EXPECT_NE(pw, nullptr) << "no user nobody";
  return pw == nullptr ? nobody_ids{65534, 65534} : nobody_ids{pw->pw_uid, pw->pw_gid};
}

// Runs fn in a forked child as nobody; returns its exit status (fn's
// result), or -1 when it did not exit normally.
int as_nobody(const std::function<int()>& fn) {
  nobody_ids who = nobody();
  core::spawn_options so;
  auto c = core::spawn_function(so, [&] {
    if (::setgroups(0, nullptr) != 0 || ::setgid(who.gid) != 0 || ::setuid(who.uid) != 0) {
      return 90;
    }
    return fn();
  });
  EXPECT_TRUE(c) << c.message();
  if (!c) {
    return -1;
  }
  auto e = core::reap(c->pidfd.get());
  return e.code == CLD_EXITED ? e.status : -1;
}

table make(const std::string& node, const std::string& name, table_type type,
           std::uint32_t max_entries = 64, std::uint32_t stripes = 1) {
  table_options o;
  o.type = type;
  o.access = access_mode::public_table;
  o.max_entries = max_entries;
  o.max_item_bytes = 64;
  o.stripes = stripes;
  auto t = table::create(node, name, o);
  EXPECT_TRUE(t) << t.message();
  return std::move(*t);
}

class ShmHostile : public shm_fixture {};

// The attacker in these tests is a process that has dropped to nobody,
// which only root can make.
#define REQUIRE_ROOT()                                                            \
  if (::geteuid() != 0) {                                                         \
    GTEST_SKIP() << "needs root: the attacker is a process that drops to nobody"; \
  }

// --- owner and mode -------------------------------------------------------------

TEST_F(ShmHostile, SegmentNamePreCreatedByAnotherUserIsRefused) {
  REQUIRE_ROOT();
  std::string seg = segment_name(node(), "cache");
  std::string pt = "otpd-pt." + node() + ".terms";
  // nobody plants both names first, sized, with a copy of nothing useful.
  ASSERT_EQ(as_nobody([&] {
              for (const auto& n : {seg, pt}) {
                int fd = ::shm_open(("/" + n).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
                if (fd < 0 || ::ftruncate(fd, 1 << 20) != 0) {
                  return 1;
                }
                ::close(fd);
              }
              return 0;
            }),
            0);
  table_options o;
  auto made = table::create(node(), "cache", o);
  EXPECT_EQ(made.error(), errc::already_exists);  // never adopted by create
  auto opened = table::open(node(), "cache");
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error(), errc::access_denied);
  EXPECT_NE(opened.message().find("/dev/shm/" + seg), std::string::npos) << opened.message();
  EXPECT_NE(opened.message().find("owned by uid " + std::to_string(nobody().uid)),
            std::string::npos)
      << opened.message();
  auto either = table::open_or_create(node(), "cache", o);
  EXPECT_EQ(either.error(), errc::access_denied) << either.message();
  auto terms = persistent_term::open(node());
  EXPECT_EQ(terms.error(), errc::access_denied) << terms.message();
  // Nor does a cleanup remove them: they are not ours to delete, even for root.
  EXPECT_TRUE(remove_stale(node()).empty());
  EXPECT_EQ(remove_all(node()), 0u);
  EXPECT_EQ(list_tables(node()), std::vector<std::string>{"cache"});
  EXPECT_EQ(as_nobody([&] {
              int bad = 0;
              for (const auto& n : {seg, pt}) {
                bad += ::shm_unlink(("/" + n).c_str()) != 0 ? 1 : 0;
              }
              return bad;
            }),
            0)
      << "a planted segment was removed by otpd's cleanup";
}

TEST_F(ShmHostile, NobodyCannotOpenReplaceOrShrinkALiveSegment) {
  REQUIRE_ROOT();
  table t = make(node(), "live", table_type::set);
  ASSERT_TRUE(t.insert("k", "v"));
  std::string seg = segment_name(node(), "live");
  struct stat dir {};
  ASSERT_EQ(::stat("/dev/shm", &dir), 0);
  ASSERT_NE(dir.st_mode & S_ISVTX, 0u) << "/dev/shm is not sticky: other users could unlink";
  int r = as_nobody([&] {
    int bad = 0;
    std::string slash = "/" + seg;
    if (::shm_open(slash.c_str(), O_RDWR, 0) >= 0 || errno != EACCES) {
      bad |= 1;
    }
    if (::shm_open(slash.c_str(), O_RDONLY, 0) >= 0 || errno != EACCES) {
      bad |= 2;
    }
    if (::shm_unlink(slash.c_str()) == 0) {
      bad |= 4;  // unlinked: could be replaced by a segment of nobody's
    }
    if (::shm_open(slash.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600) >= 0) {
      bad |= 8;
    }
    if (::truncate(("/dev/shm/" + seg).c_str(), 0) == 0) {
      bad |= 16;
    }
    auto o = table::open(node(), "live");
    if (o || o.error() != errc::access_denied) {
      bad |= 32;
    }
    return bad;
  });
  EXPECT_EQ(r, 0) << "bit mask of what nobody managed";
  EXPECT_EQ(t.lookup("k"), "v");
  EXPECT_TRUE(t.verify());
}

TEST_F(ShmHostile, GroupOrOtherAccessibleSegmentIsRefused) {
  table t = make(node(), "mode", table_type::set);
  raw_segment raw(segment_name(node(), "mode"));
  for (mode_t m : {0660, 0606, 0640, 0604}) {
    ASSERT_EQ(::fchmod(raw.fd.get(), m), 0);
    auto o = table::open(node(), "mode");
    ASSERT_FALSE(o) << std::oct << m;
    EXPECT_EQ(o.error(), errc::access_denied);
    EXPECT_NE(o.message().find("mode"), std::string::npos) << o.message();
  }
  ASSERT_EQ(::fchmod(raw.fd.get(), 0600), 0);
  EXPECT_TRUE(table::open(node(), "mode"));
}

// --- the header -------------------------------------------------------------------

TEST_F(ShmHostile, CraftedHeaderIsRefusedOnOpen) {
  table t = make(node(), "hdr", table_type::set, 256, 4);
  raw_segment raw(segment_name(node(), "hdr"));
  detail::seg_header good = raw.hdr();
  using H = detail::seg_header;
  std::vector<std::pair<const char*, std::function<void(H&)>>> cases = {
      {"3 stripes", [](H& h) { h.stripes = 3; }},
      {"0 stripes", [](H& h) { h.stripes = 0; }},
      {"huge slots", [](H& h) { h.slots_per_stripe = 0x7fffffff; }},
      {"tiny slot", [](H& h) { h.slot_size = 1; }},
      {"buckets past the end", [](H& h) { h.buckets_off = 1ULL << 40; }},
      {"slots at the end", [](H& h) { h.slots_off = h.segment_size; }},
      {"journals wrap", [](H& h) { h.journals_off = ~0ULL - 8; }},
      {"claims more bytes", [](H& h) { h.segment_size *= 2; }},
      {"bad type", [](H& h) { h.type = 7; }},
      {"bad policy", [](H& h) { h.policy = 9; }},
      {"no item bytes", [](H& h) { h.max_item_bytes = 0; }},
      {"small journal", [](H& h) { h.journal_bytes = 8; }},
      {"payload offset 0", [](H& h) { h.payload_off = 0; }},
      {"max_bytes over the cap", [](H& h) { h.max_bytes = ~0ULL; }},
      {"ordered with stripes", [](H& h) { h.type = 1; }},
  };
  for (const auto& [what, mutate] : cases) {
    H h = good;
    mutate(h);
    std::memcpy(raw.p, &h, sizeof h);
    auto o = table::open(node(), "hdr");
    ASSERT_FALSE(o) << what;
    EXPECT_EQ(o.error(), errc::corrupt) << what << ": " << o.message();
  }
  H v = good;
  v.version += 1;
  std::memcpy(raw.p, &v, sizeof v);
  EXPECT_EQ(table::open(node(), "hdr").error(), errc::malformed);
  std::memcpy(raw.p, &good, sizeof good);
  ASSERT_TRUE(table::open(node(), "hdr"));
  // Smaller than a header.
  ASSERT_EQ(::ftruncate(raw.fd.get(), 100), 0);
  EXPECT_EQ(table::open(node(), "hdr").error(), errc::corrupt);
}

// --- random bytes over a live segment ------------------------------------------------

bool ok_or(const std::error_code& e, std::initializer_list<errc> allowed) {
  if (!e) {
    return true;
  }
  for (errc a : allowed) {
    if (e == a) {
      return true;
    }
  }
  return false;
}

void random_bytes_over(const std::string& node, table_type type) {
  std::string name = type == table_type::set ? "rs" : "ro";
  table owner = make(node, name, type, 48, type == table_type::set ? 4 : 1);
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(owner.insert("key" + std::to_string(i), "value" + std::to_string(i)));
  }
  ASSERT_TRUE(owner.insert("ctr", encode_int(1)));
  raw_segment raw(segment_name(node, name));
  const detail::seg_header h = raw.hdr();
  std::vector<char> clean(raw.p, raw.p + raw.n);
  auto t = table::open(node, name);
  ASSERT_TRUE(t);
  t->set_wait(20ms);
  int corrupt_seen = 0;
  int verify_failed = 0;
  for (std::uint32_t seed = 0; seed < 300; ++seed) {
    std::memcpy(raw.p, clean.data(), raw.n);
    std::mt19937_64 rng(seed);
    int writes = 1 + static_cast<int>(rng() % 8);
    for (int w = 0; w < writes; ++w) {
      std::uint64_t off = 0;
      switch (rng() % 4) {
        case 0:  // anywhere
          off = rng() % raw.n;
          break;
        case 1:  // the stripe headers: locks, counters, heads
          off = h.stripes_off + rng() % (h.stripes * sizeof(detail::stripe_hdr));
          break;
        case 2:  // buckets and links: indices
          off = h.buckets_off + rng() % (h.slots_off - h.buckets_off);
          break;
        default:  // the slots' headers and the journals
          off = (rng() % 2 == 0 ? h.journals_off : h.slots_off) + rng() % 256;
          break;
      }
      off &= ~std::uint64_t{3};
      // A plausible index (near the slot count, or nil) half the time.
      std::uint32_t v = rng() % 2 == 0
                            ? static_cast<std::uint32_t>(rng() % (h.slots_per_stripe + 4))
                            : static_cast<std::uint32_t>(rng());
      if (off + 4 <= raw.n) {
        std::memcpy(raw.p + off, &v, 4);
      }
    }
    auto check = [&](const std::error_code& e, const char* op) {
      EXPECT_TRUE(ok_or(e, {errc::corrupt, errc::table_full, errc::invalid_argument}))
          << op << " seed " << seed << ": " << e.message();
      corrupt_seen += e == errc::corrupt ? 1 : 0;
    };
    std::string out;
    for (int i = 0; i < 44; i += 3) {
      check(t->lookup_checked("key" + std::to_string(i), out).error(), "lookup");
    }
    (void)t->member("key1");
    (void)t->select([](std::string_view, std::string_view) { return true; });
    t->fold([](const entry&) {});
    check(t->insert("new" + std::to_string(seed), "v").error(), "insert");
    check(t->insert("key2", "a longer value than before").error(), "overwrite");
    check(t->erase("key5").error(), "erase");
    check(t->take("key8").error(), "take");
    check(t->update_counter("ctr", 1).error(), "update_counter");
    check(t->sweep().error(), "sweep");
    if (type == table_type::ordered_set) {
      check(t->range("key1", "key3").error(), "range");
      check(t->last().error(), "last");
      check(t->next("key2").error(), "next");
    }
    check(
        t->select_delete([](std::string_view k, std::string_view) { return k == "key9"; }).error(),
        "select_delete");
    std::string why;
    auto v = t->verify(&why);
    EXPECT_TRUE(ok_or(v.error(), {errc::corrupt})) << v.message();
    verify_failed += v ? 0 : 1;
  }
  // The test bites: some damage was seen by the operations, and verify()
  // reported damage on many seeds.
  EXPECT_GT(corrupt_seen, 0);
  EXPECT_GT(verify_failed, 30);
  std::memcpy(raw.p, clean.data(), raw.n);
}

TEST_F(ShmHostile, RandomBytesOverASetGiveOnlyOkOrCorrupt) {
  random_bytes_over(node(), table_type::set);
}

TEST_F(ShmHostile, RandomBytesOverAnOrderedSetGiveOnlyOkOrCorrupt) {
  random_bytes_over(node(), table_type::ordered_set);
}

TEST_F(ShmHostile, IndexOutOfRangeIsCorruptForWritesAndVerify) {
  table t = make(node(), "idx", table_type::set);
  ASSERT_TRUE(t.insert("a", "1"));
  raw_segment raw(segment_name(node(), "idx"));
  raw.stripe(0).free_head = raw.hdr().slots_per_stripe + 100;  // past the pool
  EXPECT_EQ(t.insert("b", "2").error(), errc::corrupt);
  std::string why;
  EXPECT_EQ(t.verify(&why).error(), errc::corrupt);
  EXPECT_NE(why.find("free list"), std::string::npos) << why;
  EXPECT_EQ(t.lookup("a"), "1");  // what is intact stays readable
}

// --- the undo journal ------------------------------------------------------------------

TEST_F(ShmHostile, UndoRecordWhoseBoundsWrapIsCorruptNotAWrite) {
  for (std::uint64_t off : {~std::uint64_t{0} - 3, std::uint64_t{0}, std::uint64_t{64}}) {
    (void)table::remove(node(), "j");
    table t = make(node(), "j", table_type::set);
    ASSERT_TRUE(t.insert("a", "1"));
    raw_segment raw(segment_name(node(), "j"));
    // One record: 8 bytes at off (wraps the segment, or hits the header).
    char* j = raw.p + raw.hdr().journals_off;
    detail::undo_rec r{off, 8, 0};
    std::memset(j + sizeof(detail::journal_hdr) + sizeof r, 0x5a, 8);
    std::memcpy(j + sizeof(detail::journal_hdr), &r, sizeof r);
    reinterpret_cast<detail::journal_hdr*>(j)->n = 1;
    raw.stripe(0).seq |= 1;  // as a writer killed mid-write leaves it
    t.set_wait(200ms);
    EXPECT_EQ(t.insert("b", "2").error(), errc::corrupt) << off;
    std::string out;
    EXPECT_EQ(t.lookup_checked("a", out).error(), errc::corrupt) << off;
    EXPECT_EQ(t.verify().error(), errc::corrupt) << off;
    EXPECT_EQ(raw.hdr().magic, detail::table_magic);  // nothing was "restored"
  }
}

// --- waits ------------------------------------------------------------------------------

TEST_F(ShmHostile, ReaderBehindAStoppedWriterGetsBusy) {
  table t = make(node(), "stop", table_type::set);
  ASSERT_TRUE(t.insert("a", "1"));
  core::spawn_options so;
  auto c = core::spawn_function(so, [&] {
    auto w = table::open(node(), "stop");
    if (!w) {
      return 1;
    }
    fault_injection::stop_at_point(1);  // lock held, counter odd
    return w->insert("b", "2") ? 0 : 2;
  });
  ASSERT_TRUE(c);
  siginfo_t si{};
  ASSERT_EQ(::waitid(P_PIDFD, static_cast<id_t>(c->pidfd.get()), &si, WSTOPPED), 0);
  ASSERT_EQ(si.si_code, CLD_STOPPED);
  t.set_wait(300ms);
  std::string out;
  EXPECT_EQ(t.lookup_checked("a", out).error(), errc::busy);
  EXPECT_FALSE(t.lookup("a"));  // the plain lookup gives up too, as absent
  EXPECT_EQ(t.insert("c", "3").error(), errc::busy);
  EXPECT_EQ(t.verify().error(), errc::busy);
  ASSERT_EQ(::kill(c->pid, SIGCONT), 0);
  auto e = core::reap(c->pidfd.get());
  EXPECT_EQ(e.code, CLD_EXITED);
  EXPECT_EQ(e.status, 0);
  EXPECT_EQ(t.lookup("b"), "2");
  EXPECT_TRUE(t.insert("c", "3"));
  EXPECT_TRUE(t.verify());
}

TEST_F(ShmHostile, GarbageLockWordIsCorruptWithinTheDeadline) {
  table t = make(node(), "lock", table_type::set);
  ASSERT_TRUE(t.insert("a", "1"));
  raw_segment raw(segment_name(node(), "lock"));
  pthread_mutex_t saved = raw.mutex(0);
  t.set_wait(200ms);
  // A lock word naming a thread that does not exist (and an owner field to
  // match): nobody will ever release it.
  raw.mutex(0).__data.__lock = 0x3ffffff0;
  raw.mutex(0).__data.__owner = 0x3ffffff0;
  EXPECT_EQ(t.insert("b", "2").error(), errc::corrupt);
  EXPECT_EQ(t.verify().error(), errc::corrupt);
  EXPECT_EQ(t.lookup("a"), "1");  // readers take no lock
  // Owner field and lock word that disagree.
  raw.mutex(0) = saved;
  raw.mutex(0).__data.__lock = static_cast<int>(::getpid());
  EXPECT_EQ(t.insert("b", "2").error(), errc::corrupt);
  // A kind word that is not a robust shared mutex's: refused at once.
  raw.mutex(0) = saved;
  raw.mutex(0).__data.__kind = 0x7f;
  EXPECT_EQ(t.insert("b", "2").error(), errc::corrupt);
  raw.mutex(0) = saved;
  EXPECT_TRUE(t.insert("b", "2"));
  EXPECT_TRUE(t.verify());
}

// --- shrink ------------------------------------------------------------------------------

TEST_F(ShmHostile, SegmentShrunkUnderAReaderAnswersCorruptAndTheProcessLives) {
  table owner = make(node(), "shrink", table_type::set, 2048, 4);
  for (int i = 0; i < 500; ++i) {
    ASSERT_TRUE(owner.insert("k" + std::to_string(i), std::string(40, 'x')));
  }
  auto reader = table::open(node(), "shrink");
  ASSERT_TRUE(reader);
  table other = make(node(), "intact", table_type::set);
  ASSERT_TRUE(other.insert("a", "1"));
  {
    raw_segment raw(segment_name(node(), "shrink"));
    ASSERT_EQ(::ftruncate(raw.fd.get(), 4096), 0);  // the header only
  }
  std::string out;
  EXPECT_EQ(reader->lookup_checked("k7", out).error(), errc::corrupt);
  EXPECT_FALSE(reader->lookup("k8"));
  EXPECT_EQ(reader->insert("k9", "v").error(), errc::corrupt);
  std::string why;
  EXPECT_EQ(reader->verify(&why).error(), errc::corrupt);
  EXPECT_NE(why.find("shrunk"), std::string::npos) << why;
  EXPECT_EQ(owner.insert("k1", "v").error(), errc::corrupt);
  EXPECT_TRUE(reader->select([](std::string_view, std::string_view) { return true; }).empty());
  // A new opener sees a header that claims more than the file has.
  EXPECT_EQ(table::open(node(), "shrink").error(), errc::corrupt);
  // Other tables are untouched.
  EXPECT_EQ(other.lookup("a"), "1");
  EXPECT_TRUE(other.verify());
}

TEST_F(ShmHostile, SigbusOutsideAnySegmentStillKills) {
  table t = make(node(), "guarded", table_type::set);  // the guard is installed
  core::spawn_options so;
  auto c = core::spawn_function(so, [] {
    ::raise(SIGBUS);
    return 0;
  });
  ASSERT_TRUE(c);
  auto e = core::reap(c->pidfd.get());
  // Killed by it, or (ASan build) reported by the sanitizer's own handler,
  // which ours passed it to: never swallowed.
  bool killed = e.code == CLD_KILLED && e.status == SIGBUS;
  bool reported = e.code == CLD_EXITED && e.status != 0;
  EXPECT_TRUE(killed || reported) << e.code << " " << e.status;
}

// --- persistent_term ------------------------------------------------------------------------

TEST_F(ShmHostile, PersistentTermBoundsCountsAndLengths) {
  auto pt = persistent_term::open(node());
  ASSERT_TRUE(pt) << pt.message();
  ASSERT_TRUE(pt->put("a", "1"));
  ASSERT_TRUE(pt->put("b", "2"));
  raw_segment raw("otpd-pt." + node() + ".terms");
  auto* a = reinterpret_cast<detail::pt_area*>(raw.p);
  detail::pt_buf& cur = a->buf[a->gen & 1];
  std::string out;

  cur.count = 100000;
  EXPECT_EQ(pt->get_checked("zz", out).error(), errc::corrupt);
  EXPECT_LE(pt->all().size(), persistent_term::max_terms);
  EXPECT_EQ(pt->put("c", "3").error(), errc::corrupt);
  EXPECT_EQ(pt->verify().error(), errc::corrupt);
  cur.count = 2;

  cur.e[0].vlen = 1u << 30;
  cur.e[1].klen = 1u << 30;
  EXPECT_EQ(pt->get_checked("a", out).error(), errc::corrupt);
  EXPECT_EQ(pt->put("c", "3").error(), errc::corrupt);
  EXPECT_EQ(pt->verify().error(), errc::corrupt);
  for (const auto& [k, v] : pt->all()) {
    EXPECT_LE(k.size(), persistent_term::max_key_bytes);
    EXPECT_LE(v.size(), persistent_term::max_value_bytes);
  }
  cur.e[0].vlen = 1;
  cur.e[1].klen = 1;
  EXPECT_EQ(pt->get("a"), "1");
  ASSERT_TRUE(pt->put("c", "3"));
  EXPECT_TRUE(pt->verify());

  // Garbage in the writers' lock word: a put gives up within its bound.
  a->mutex.__data.__kind = 0x7f;
  EXPECT_EQ(pt->put("d", "4").error(), errc::corrupt);
  EXPECT_EQ(pt->get("c"), "3");
}

}  // namespace
}  // namespace otpd::shm_table::test
