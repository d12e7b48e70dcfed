// The shm terms cache: the owner program creates the table and sweeps it;
// this process puts and gets directly. Mirrors the cache tests of the
// training (put then get; a missing key gives nothing; a value with a short
// TTL is there at once and gone after expiry) plus owner restarts.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "shm_fixture.hpp"
#include <gtest/gtest.h>

#include <otpd/core/clock.hpp>
#include <otpd/core/pipe.hpp>
#include <otpd/core/ready.hpp>
#include <otpd/core/spawn.hpp>
#include <otpd/core/unique_fd.hpp>
#include <otpd/shm_table/cache.hpp>
#include <otpd/testing/testing.hpp>

extern char** environ;

namespace otpd::shm_table::test {
namespace {

using namespace std::chrono_literals;

// Starts shm_cache_owner with a readiness pipe on fd 3; returns once it
// wrote its "\n" (or fails the test).
class Owner {
 public:
  Owner(const std::string& node, std::vector<std::string> extra = {}) {
    auto p = core::make_pipe();
    EXPECT_TRUE(p);
    if (!p) {
      return;
    }
    core::unique_fd rd = std::move(p->read);
    core::unique_fd wr = std::move(p->write);
    core::spawn_options o;
    o.argv = {otpd::testing::bin_path("shm_cache_owner"), "--node", node, "--sweep-ms", "20"};
    o.argv.insert(o.argv.end(), extra.begin(), extra.end());
    for (char** e = environ; *e != nullptr; ++e) {
      o.env.emplace_back(*e);
    }
    o.env.emplace_back("OTPD_READY_FD=3");
    o.fds = {{wr.get(), 3}};
    auto c = core::spawn(o);
    EXPECT_TRUE(c) << c.error().message();
    if (!c) {
      return;
    }
    proc_ = std::move(*c);
    wr.reset();
    auto r = core::wait_ready(rd.get(), core::deadline::after(otpd::testing::scaled(5000ms)));
    EXPECT_TRUE(r) << "owner not ready: " << r.message();
    ready_ = r.has_value();
  }
  Owner(const Owner&) = delete;
  Owner& operator=(const Owner&) = delete;
  Owner(Owner&&) = delete;
  Owner& operator=(Owner&&) = delete;
  ~Owner() {
    if (proc_.pidfd) {
      (void)core::kill_and_reap(proc_.pid, SIGKILL, core::deadline::never(), proc_.pidfd.get());
    }
  }
  [[nodiscard]] bool ready() const { return ready_; }
  [[nodiscard]] pid_t pid() const { return proc_.pid; }
  core::child_exit stop(int sig) {
    auto e = core::kill_and_reap(proc_.pid, sig, core::deadline::never(), proc_.pidfd.get());
    proc_.pidfd.reset();
    return e.exit;
  }

 private:
  core::spawned proc_;
  bool ready_ = false;
};

class ShmCache : public shm_fixture {};

TEST_F(ShmCache, PutThenGetAndAMissingKeyGivesNothing) {
  Owner owner(node());
  ASSERT_TRUE(owner.ready());
  auto c = cache_client::attach(node());
  ASSERT_TRUE(c) << c.error().message();
  ASSERT_TRUE(c->put("key", "value"));
  EXPECT_EQ(c->get("key"), "value");
  EXPECT_EQ(c->get("missing"), std::nullopt);
  EXPECT_EQ(c->raw().info().owner, owner.pid());
}

TEST_F(ShmCache, ShortTtlValueIsThereAtOnceAndGoneAfterExpiry) {
  Owner owner(node());
  ASSERT_TRUE(owner.ready());
  auto c = cache_client::attach(node());
  ASSERT_TRUE(c);
  auto put_at = core::monotonic_ns();
  ASSERT_TRUE(c->put("short", "lived", 300ms));
  EXPECT_EQ(c->get("short"), "lived");
  ASSERT_TRUE(otpd::testing::wait_until([&] { return !c->get("short"); }, 5000ms));
  EXPECT_GE(core::monotonic_ns() - put_at, 300'000'000);
  // The owner's sweep reclaims it (size counts stored entries until then).
  EXPECT_TRUE(otpd::testing::wait_until([&] { return c->raw().size() == 0; }, 5000ms));
}

TEST_F(ShmCache, OwnerKilledAndRestartedKeepsTheData) {
  auto first = std::make_unique<Owner>(node());
  ASSERT_TRUE(first->ready());
  {
    auto c = cache_client::attach(node());
    ASSERT_TRUE(c);
    for (int i = 0; i < 100; ++i) {
      ASSERT_TRUE(c->put("k" + std::to_string(i), "v" + std::to_string(i)));
    }
  }
  auto e = first->stop(SIGKILL);
  EXPECT_EQ(e.code, CLD_KILLED);
  first.reset();
  auto c = cache_client::attach(node());
  ASSERT_TRUE(c);
  EXPECT_EQ(c->get("k42"), "v42");  // readable while no owner runs
  Owner second(node());
  ASSERT_TRUE(second.ready());
  EXPECT_EQ(c->raw().info().owner, second.pid());
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(c->get("k" + std::to_string(i)), "v" + std::to_string(i));
  }
  // SIGTERM: an orderly exit that keeps the table.
  auto t = second.stop(SIGTERM);
  EXPECT_EQ(t.code, CLD_EXITED);
  EXPECT_EQ(t.status, 0);
  EXPECT_EQ(list_tables(node()), (std::vector<std::string>{"cache"}));
  EXPECT_EQ(c->get("k7"), "v7");
}

TEST_F(ShmCache, ProtectedCacheRefusesOtherWriters) {
  Owner owner(node(), {"--access", "protected", "--table", "prot"});
  ASSERT_TRUE(owner.ready());
  auto c = cache_client::attach(node(), "prot");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->put("k", "v").error(), core::errc::access_denied);
  EXPECT_EQ(c->get("k"), std::nullopt);
}

TEST_F(ShmCache, DefaultSizeFitsDockersDefaultDevShm) {
  Owner owner(node());
  ASSERT_TRUE(owner.ready());
  auto c = cache_client::attach(node());
  ASSERT_TRUE(c);
  // docker gives a container 64 MiB of /dev/shm; the cache leaves room in it
  // for the node's other tables.
  EXPECT_LT(c->raw().memory(), std::uint64_t{48} << 20);
}

TEST_F(ShmCache, OwnerRefusesATableLargerThanDevShmNamingTheSetting) {
  int status = 0;
  std::string out = otpd::testing::sh_output(
      otpd::testing::shell_quote(otpd::testing::bin_path("shm_cache_owner")) + " --node " + node() +
          " --max-entries 4000000000 --max-item-bytes 1048576 2>&1",
      &status);
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("/dev/shm"), std::string::npos) << out;
  EXPECT_NE(out.find("--max-entries (4000000000)"), std::string::npos) << out;
  EXPECT_NE(out.find("bytes"), std::string::npos) << out;
  EXPECT_TRUE(list_tables(node()).empty());
}

}  // namespace
}  // namespace otpd::shm_table::test
