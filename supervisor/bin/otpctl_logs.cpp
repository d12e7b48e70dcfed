#include "otpctl_logs.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include <otpd/core/unique_fd.hpp>

namespace otpd::otpctl {

namespace {

namespace proto = otpd::protocol;
using core::unique_fd;

constexpr int exit_ok = 0;
constexpr int exit_no = 1;
constexpr int exit_sys = 111;
constexpr std::size_t block = 64 * 1024;
// How often a follow looks for more (as tail -f's default 1 s, but shorter:
// a person watching a restart wants it at once).
constexpr long follow_poll_ms = 200;
constexpr int max_keep = 100;  // the most rotated files a config may keep

std::string fmt_rotated(const std::string& path, int k) {
  return path + "." + std::to_string(k);
}

// The child named by id: its path, else its id when no other child has it.
const proto::node_status* find_child(const proto::node_status& n, const std::string& id,
                                     const proto::node_status** by_id, int& id_matches) {
  for (const auto& c : n.children) {
    if (c.path == id) {
      return &c;
    }
    if (c.id == id) {
      *by_id = &c;
      ++id_matches;
    }
    if (const auto* found = find_child(c, id, by_id, id_matches)) {
      return found;
    }
  }
  return nullptr;
}

void put(std::string_view bytes) {
  if (!bytes.empty()) {
    std::fwrite(bytes.data(), 1, bytes.size(), stdout);
  }
}

// The last n lines of fd's first `end` bytes (a last line without its
// newline counts); *found says how many there were, up to n.
std::string last_lines(int fd, off_t end, int n, int* found) {
  std::string tail;
  off_t at = end;
  auto complete = [&](std::size_t* start) {
    // Newlines before the last byte: each one ends a line before the last.
    int count = 0;
    std::size_t i = tail.size() > 0 ? tail.size() - 1 : 0;
    while (i > 0) {
      --i;
      if (tail[i] == '\n' && ++count == n) {
        *start = i + 1;
        return true;
      }
    }
    return false;
  };
  std::size_t start = 0;
  while (n > 0) {
    if (complete(&start)) {
      *found = n;
      return tail.substr(start);
    }
    if (at == 0) {
      break;
    }
    off_t len = at < static_cast<off_t>(block) ? at : static_cast<off_t>(block);
    at -= len;
    std::string chunk(static_cast<std::size_t>(len), '\0');
    ssize_t r = ::pread(fd, chunk.data(), chunk.size(), at);
    if (r <= 0) {
      break;
    }
    chunk.resize(static_cast<std::size_t>(r));
    tail.insert(0, chunk);
  }
  int lines = 0;
  for (std::size_t i = 0; i + 1 < tail.size(); ++i) {
    lines += tail[i] == '\n' ? 1 : 0;
  }
  *found = tail.empty() ? 0 : lines + 1;
  return n > 0 ? tail : std::string();
}

void sleep_ms(long ms) {
  timespec ts{ms / 1000, (ms % 1000) * 1000000};
  while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

// Copies what fd has past its offset to stdout; false on a read error.
bool drain(int fd) {
  char buf[block];
  for (;;) {
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r > 0) {
      put(std::string_view(buf, static_cast<std::size_t>(r)));
      continue;
    }
    if (r < 0 && errno == EINTR) {
      continue;
    }
    std::fflush(stdout);
    return r == 0;
  }
}

// The file written after `cur` once otpd rotated it: cur is now path.k, so
// its successor is path.(k-1) (path itself for k = 1); when it rotated more
// than once between two looks, that is not path yet. path when cur is gone.
std::string successor(const std::string& path, const struct stat& cur) {
  for (int k = 1; k <= max_keep; ++k) {
    struct stat st {};
    if (::stat(fmt_rotated(path, k).c_str(), &st) != 0) {
      break;
    }
    if (st.st_ino == cur.st_ino && st.st_dev == cur.st_dev) {
      return k == 1 ? path : fmt_rotated(path, k - 1);
    }
  }
  return path;
}

// Follows path from fd's offset: what is appended, then, when the file is
// renamed away (otpd rotated it), the rest of the old one and the next one
// from its start; when it shrinks (truncated), from its start again.
int follow(const std::string& path, unique_fd f) {
  struct stat cur {};
  std::string reading = path;  // the name of what f reads, as last opened
  if (f) {
    (void)::fstat(f.get(), &cur);
  }
  for (;;) {
    if (f && !drain(f.get())) {
      std::fprintf(stderr, "otpctl: unable to read %s: %s\n", path.c_str(), std::strerror(errno));
      return exit_sys;
    }
    struct stat now {};
    bool there = ::stat(path.c_str(), &now) == 0;
    if (there && (!f || now.st_ino != cur.st_ino || now.st_dev != cur.st_dev)) {
      if (f) {
        (void)drain(f.get());  // written just before the rename
      }
      reading = f ? successor(path, cur) : path;
      f.reset(::open(reading.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
      if (f) {
        (void)::fstat(f.get(), &cur);
      }
      continue;
    }
    if (f) {
      struct stat mine {};
      off_t pos = ::lseek(f.get(), 0, SEEK_CUR);
      if (::fstat(f.get(), &mine) == 0 && pos > mine.st_size) {
        std::fprintf(stderr, "otpctl: %s: file truncated\n", path.c_str());
        ::lseek(f.get(), 0, SEEK_SET);
        continue;
      }
    }
    sleep_ms(follow_poll_ms);
  }
}

}  // namespace

int logs(const proto::status_reply& st, const logs_options& o) {
  const proto::node_status* by_id = nullptr;
  int id_matches = 0;
  const proto::node_status* c = find_child(st.root, o.id, &by_id, id_matches);
  if (c == nullptr && id_matches == 1) {
    c = by_id;
  }
  if (c == nullptr) {
    std::fprintf(
        stderr, "otpctl: %s: %s\n", o.id.c_str(),
        id_matches > 1 ? "more than one child has this id; give its path" : "no such child");
    return exit_no;
  }
  const char* stream = o.stderr_stream ? "stderr" : "stdout";
  if (c->is_supervisor) {
    std::fprintf(stderr, "otpctl: %s is a supervisor: it has no output of its own\n",
                 c->path.c_str());
    return exit_no;
  }
  const std::optional<std::string>& file = o.stderr_stream ? c->stderr_path : c->stdout_path;
  if (!file) {
    std::fprintf(stderr,
                 "otpctl: %s's %s is not written to a file by otpd (its config says inherit, "
                 "inherit_prefixed or null); otpctl logs reads file outputs only\n",
                 c->path.c_str(), stream);
    return exit_no;
  }
  const std::string& path = *file;
  unique_fd f(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!f && !(o.follow && errno == ENOENT)) {
    std::fprintf(stderr, "otpctl: unable to read %s's %s log %s: %s\n", c->path.c_str(), stream,
                 path.c_str(), std::strerror(errno));
    return exit_sys;
  }
  if (f) {
    off_t end = ::lseek(f.get(), 0, SEEK_END);
    int found = 0;
    std::string text = last_lines(f.get(), end < 0 ? 0 : end, o.lines, &found);
    if (found < o.lines) {
      // The rest from the file rotated last (path.1).
      unique_fd older(::open((path + ".1").c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
      if (older) {
        off_t older_end = ::lseek(older.get(), 0, SEEK_END);
        int more = 0;
        std::string before =
            last_lines(older.get(), older_end < 0 ? 0 : older_end, o.lines - found, &more);
        if (!before.empty() && before.back() != '\n') {
          before += '\n';
        }
        put(before);
      }
    }
    put(text);
    std::fflush(stdout);
    ::lseek(f.get(), end < 0 ? 0 : end, SEEK_SET);
  }
  if (!o.follow) {
    return exit_ok;
  }
  return follow(path, std::move(f));
}

}  // namespace otpd::otpctl
