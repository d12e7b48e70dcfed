// Log files: written through a checked directory fd, a planted symlink is
// refused and never followed, and a failing file backs off instead of being
// retried (and rotated again) on every write.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "output_capture.hpp"
#include <gtest/gtest.h>

#include <otpd/testing/testing.hpp>

namespace otpd::supervisor {
namespace {

namespace fs = std::filesystem;

log_sink sink_at(const std::string& path, std::uint64_t max_bytes = 1 << 20, int keep = 2) {
  log_sink s;
  s.spec.kind = output_kind::file;
  s.spec.path = path;
  s.spec.max_bytes = max_bytes;
  s.spec.keep = keep;
  return s;
}

void put(log_sink& s, const std::string& text) {
  s.write(text.data(), text.size());
}

struct planted {
  testing::temp_dir d;
  std::string logs = d.path() + "/logs";
  std::string log = logs + "/app.log";
  std::string target = d.path() + "/target";
  planted() {
    fs::create_directories(logs);
    std::ofstream(target) << "precious\n";
  }
};

TEST(LogSink, RefusesASymlinkAtTheLogPathAndLeavesItsTargetAlone) {
  planted p;
  fs::create_symlink(p.target, p.log);
  log_sink s = sink_at(p.log);
  ::testing::internal::CaptureStderr();
  EXPECT_FALSE(s.open());
  put(s, "secret output\n");
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(s.error, "log file " + p.log + " is a symbolic link: refused, not followed");
  EXPECT_NE(err.find("log file " + p.log + " is a symbolic link: refused, not followed"),
            std::string::npos)
      << err;
  EXPECT_EQ(s.dropped, 14u);
  EXPECT_EQ(testing::read_file(p.target), "precious\n");
  EXPECT_TRUE(fs::is_symlink(p.log));
}

TEST(LogSink, RefusesASymlinkedDirectory) {
  planted p;
  std::string elsewhere = p.d.path() + "/elsewhere";
  fs::create_directories(elsewhere);
  std::string linked = p.d.path() + "/linked";
  fs::create_directory_symlink(elsewhere, linked);
  log_sink s = sink_at(linked + "/app.log");
  ::testing::internal::CaptureStderr();
  EXPECT_FALSE(s.open());
  (void)::testing::internal::GetCapturedStderr();
  EXPECT_EQ(s.error, "the log directory " + linked + " is a symbolic link: refused, not followed");
  EXPECT_FALSE(fs::exists(elsewhere + "/app.log"));
}

// A symlink put in the log's place while it is being rotated: the rename
// moves the link itself, and the reopen refuses a link found at the path.
TEST(LogSink, ASymlinkSwappedInAtRotationIsNotFollowed) {
  planted p;
  {
    log_sink s = sink_at(p.log, 10, 2);
    ASSERT_TRUE(s.open());
    put(s, "0123456789");
    fs::remove(p.log);
    fs::create_symlink(p.target, p.log);
    put(s, "after\n");  // rotates: app.log (the link) becomes app.log.1
    EXPECT_TRUE(s.error.empty()) << s.error;
    EXPECT_TRUE(fs::is_symlink(p.log + ".1"));
    EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(p.log)));
    EXPECT_EQ(testing::read_file(p.log), "after\n");
  }
  EXPECT_EQ(testing::read_file(p.target), "precious\n");

  // Now the rename cannot move it (app.log.1 is a directory): the reopen
  // finds the link at the path and refuses it.
  fs::remove_all(p.logs);
  fs::create_directories(p.log + ".1/x");
  log_sink s = sink_at(p.log, 10, 1);
  ASSERT_TRUE(s.open());
  put(s, "0123456789");
  fs::remove(p.log);
  fs::create_symlink(p.target, p.log);
  ::testing::internal::CaptureStderr();
  put(s, "after\n");
  (void)::testing::internal::GetCapturedStderr();
  EXPECT_EQ(s.error, "log file " + p.log + " is a symbolic link: refused, not followed");
  EXPECT_EQ(s.dropped, 6u);
  EXPECT_EQ(testing::read_file(p.target), "precious\n");
}

TEST(LogSink, RefusesDirectoriesOtherUsersMayWrite) {
  planted p;
  fs::permissions(p.logs, fs::perms(0777));
  log_sink s = sink_at(p.log);
  ::testing::internal::CaptureStderr();
  EXPECT_FALSE(s.open());
  EXPECT_EQ(s.error, "the log directory " + p.logs + " is writable by every user (mode 0777)");

  // A directory above it counts too: whoever may write there may replace
  // the log directory by one of their own.
  fs::permissions(p.logs, fs::perms(0755));
  fs::permissions(p.d.path(), fs::perms(0777));
  log_sink above = sink_at(p.log);
  EXPECT_FALSE(above.open());
  EXPECT_EQ(above.error, "a directory above the log file (" + p.d.path() +
                             ") is writable by every user (mode 0777)");
  (void)::testing::internal::GetCapturedStderr();

  // Sticky (as /tmp): entries are protected from other users, so allowed.
  fs::permissions(p.d.path(), fs::perms(01777));
  log_sink sticky = sink_at(p.log);
  EXPECT_TRUE(sticky.open()) << sticky.error;
  fs::permissions(p.d.path(), fs::perms(0700));
}

TEST(LogSink, RefusesADirectoryOwnedByAnotherUser) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to give a directory to nobody";
  }
  planted p;
  ASSERT_EQ(::chown(p.logs.c_str(), 65534, 65534), 0);
  log_sink s = sink_at(p.log);
  ::testing::internal::CaptureStderr();
  EXPECT_FALSE(s.open());
  (void)::testing::internal::GetCapturedStderr();
  EXPECT_EQ(s.error.rfind("the log directory " + p.logs + " is owned by uid 65534", 0), 0u)
      << s.error;
  EXPECT_NE(s.error.find("not by otpd's user or root"), std::string::npos) << s.error;
}

// The directory is replaced by a file under a full log: the rotation's
// reopen fails, and so does every retry until it is put back.
// Output is then dropped and counted, one warning is logged, and no new
// attempt is made before the back-off delay however much is written; a
// reopen (otpctl reopen-logs, SIGHUP) tries at once and reports the drops.
TEST(LogSink, AFailingReopenBacksOffLogsOnceAndCountsWhatIsDropped) {
  planted p;
  log_sink s = sink_at(p.log, 10, 2);
  ASSERT_TRUE(s.open());
  put(s, "0123456789");
  fs::remove_all(p.logs);
  std::ofstream(p.logs) << "in the way\n";
  ::testing::internal::CaptureStderr();
  for (int i = 0; i < 100; ++i) {
    put(s, "line\n");
  }
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_FALSE(s.error.empty());
  EXPECT_EQ(s.dropped, 500u);
  // One attempt (two or three on a machine stalled for seconds), not 100:
  // each failed attempt doubles the delay.
  EXPECT_LE(s.retry_delay, std::chrono::milliseconds(4000));
  std::size_t warnings = 0;
  for (auto at = err.find("dropping this output"); at != std::string::npos;
       at = err.find("dropping this output", at + 1)) {
    ++warnings;
  }
  EXPECT_EQ(warnings, 1u) << err;
  EXPECT_EQ(testing::read_file(p.logs), "in the way\n");

  fs::remove(p.logs);
  ::testing::internal::CaptureStderr();
  EXPECT_TRUE(s.reopen());
  err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("log file " + p.log + " is written again; 500 bytes of output were dropped"),
            std::string::npos)
      << err;
  EXPECT_EQ(s.dropped, 0u);
  EXPECT_EQ(s.dropped_total, 500u);
  put(s, "back\n");
  EXPECT_EQ(testing::read_file(p.log), "back\n");
}

}  // namespace
}  // namespace otpd::supervisor
