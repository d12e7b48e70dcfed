#include <sys/wait.h>

#include <random>
#include <string>
#include <vector>

#include "shm_fixture.hpp"
#include <gtest/gtest.h>

#include <otpd/core/spawn.hpp>
#include <otpd/shm_table/codec.hpp>
#include <otpd/shm_table/table.hpp>

namespace otpd::shm_table::test {
namespace {

// A value that checks itself: 8 bytes of a seed, then bytes derived from it,
// of a length derived from it. A torn read (half old, half new) fails check().
std::string make_value(std::uint64_t seed) {
  std::size_t len = 8 + seed % 150;
  std::string v(len, '\0');
  std::memcpy(v.data(), &seed, 8);
  for (std::size_t i = 8; i < len; ++i) {
    v[i] = static_cast<char>((seed * 131 + i * 7) & 0xff);
  }
  return v;
}
bool check(std::string_view v) {
  if (v.size() < 8) {
    return false;
  }
  std::uint64_t seed;
  std::memcpy(&seed, v.data(), 8);
  return v == make_value(seed);
}

class Concurrent : public shm_fixture, public ::testing::WithParamInterface<table_type> {};

// Two writers and two readers (separate processes) hammer the same few
// stripes; readers never see a torn value, counters add up, verify() passes.
TEST_P(Concurrent, ReadersAndWritersInSeveralProcesses) {
  table_options o;
  o.type = GetParam();
  o.access = access_mode::public_table;
  o.max_entries = 2000;
  o.stripes = 4;
  auto t = table::create(node(), "c", o);
  ASSERT_TRUE(t);
  constexpr int kOps = 60000;
  constexpr int kKeys = 300;
  std::vector<core::spawned> kids;
  for (int w = 0; w < 2; ++w) {
    core::spawn_options so;
    auto c = core::spawn_function(so, [&, w] {
      auto tt = table::open(node(), "c");
      if (!tt) {
        return 10;
      }
      std::mt19937_64 rng(static_cast<std::uint64_t>(w) + 1);
      for (int i = 0; i < kOps; ++i) {
        std::string k = "k" + std::to_string(rng() % kKeys);
        switch (rng() % 8) {
          case 0:
            if (!tt->erase(k)) {
              return 11;
            }
            break;
          case 1:
            if (!tt->update_counter("ctr", 1)) {
              return 12;
            }
            break;
          default:
            if (!tt->insert(k, make_value(rng()))) {
              return 13;
            }
        }
      }
      return 0;
    });
    ASSERT_TRUE(c);
    kids.push_back(std::move(*c));
  }
  for (int r = 0; r < 2; ++r) {
    core::spawn_options so;
    auto c = core::spawn_function(so, [&, r] {
      auto tt = table::open(node(), "c");
      if (!tt) {
        return 20;
      }
      std::mt19937_64 rng(static_cast<std::uint64_t>(r) + 100);
      std::string out;
      for (int i = 0; i < kOps; ++i) {
        std::string k = "k" + std::to_string(rng() % kKeys);
        if (tt->lookup_into(k, out) && !check(out)) {
          return 21;
        }
        if (i % 5000 == 0) {
          bool ok = true;
          tt->fold([&](const entry& e) {
            if (e.key != "ctr" && !check(e.value)) {
              ok = false;
            }
          });
          if (!ok) {
            return 22;
          }
        }
      }
      return 0;
    });
    ASSERT_TRUE(c);
    kids.push_back(std::move(*c));
  }
  for (auto& k : kids) {
    auto e = core::reap(k.pidfd.get());
    EXPECT_EQ(e.code, CLD_EXITED);
    EXPECT_EQ(e.status, 0);
  }
  std::string why;
  EXPECT_TRUE(t->verify(&why)) << why;
  // Each writer incremented ctr exactly as often as its rng chose case 1.
  std::int64_t expected = 0;
  for (int w = 0; w < 2; ++w) {
    std::mt19937_64 rng(static_cast<std::uint64_t>(w) + 1);
    for (int i = 0; i < kOps; ++i) {
      (void)rng();
      std::uint64_t op = rng() % 8;
      if (op == 1) {
        ++expected;
      } else if (op != 0) {
        (void)rng();
      }
    }
  }
  EXPECT_EQ(lookup_int(*t, "ctr"), expected);
  EXPECT_EQ(t->repairs(), 0u);
}

INSTANTIATE_TEST_SUITE_P(ShmTable, Concurrent,
                         ::testing::Values(table_type::set, table_type::ordered_set),
                         [](const auto& info) { return std::string(to_string(info.param)); });

}  // namespace
}  // namespace otpd::shm_table::test
