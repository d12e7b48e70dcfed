#include "output_capture.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <otpd/core/log.hpp>

namespace otpd::supervisor {

namespace {

constexpr std::chrono::milliseconds first_retry{1000};
constexpr std::chrono::milliseconds max_retry{60000};
constexpr int max_dir_levels = 256;

std::string owner_of(uid_t uid) {
  struct passwd* pw = ::getpwuid(uid);
  return pw != nullptr ? fmt::format("uid {} ({})", uid, pw->pw_name) : fmt::format("uid {}", uid);
}

bool sticky(const struct stat& st) {
  return (st.st_mode & S_ISVTX) != 0;
}

// Why otpd must not write below directory `name` (st), or "" when it may:
// only otpd's euid or root may own it, and nobody else may add or replace
// entries in it, except in a sticky directory (as /tmp), where nobody may
// replace an entry they do not own.
std::string unsafe_dir(const struct stat& st, const std::string& name) {
  if (st.st_uid != ::geteuid() && st.st_uid != 0) {
    return fmt::format("{} is owned by {}, not by otpd's user or root", name, owner_of(st.st_uid));
  }
  if (sticky(st)) {
    return {};
  }
  if ((st.st_mode & S_IWOTH) != 0) {
    return fmt::format("{} is writable by every user (mode {:04o})", name, st.st_mode & 07777);
  }
  if ((st.st_mode & S_IWGRP) != 0 && st.st_gid != ::getegid()) {
    struct group* gr = ::getgrgid(st.st_gid);
    return fmt::format("{} is writable by group {} (mode {:04o})", name,
                       gr != nullptr ? gr->gr_name : std::to_string(st.st_gid), st.st_mode & 07777);
  }
  return {};
}

}  // namespace

// Opens the log file's directory without following a symlink in its place,
// then checks it and every directory above it (through "..", so what is
// checked is what the fd reaches, whatever path led there).
bool log_sink::open_dir() {
  dir.reset();
  std::filesystem::path p(spec.path);
  std::string d = p.parent_path().empty() ? std::string("/") : p.parent_path().string();
  std::error_code ec;
  std::filesystem::create_directories(d, ec);
  core::unique_fd fd(::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    int err = errno;
    struct stat lst {};
    if (::lstat(d.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) {
      failed(fmt::format("the log directory {} is a symbolic link: refused, not followed", d));
    } else {
      failed(fmt::format("unable to open the log directory {}: {}", d, std::strerror(err)));
    }
    return false;
  }
  core::unique_fd cur(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0));
  std::string name = d;
  struct stat prev {};
  for (int level = 0; cur && level < max_dir_levels; ++level) {
    struct stat st {};
    if (::fstat(cur.get(), &st) != 0) {
      break;
    }
    if (level > 0 && st.st_dev == prev.st_dev && st.st_ino == prev.st_ino) {
      break;  // "/" is its own parent
    }
    std::string why = unsafe_dir(st, level == 0 ? "the log directory " + name
                                                : "a directory above the log file (" + name + ")");
    if (!why.empty()) {
      failed(why);
      return false;
    }
    if (level == 0) {
      dir_shared = sticky(st);
    }
    prev = st;
    cur.reset(::openat(cur.get(), "..", O_PATH | O_DIRECTORY | O_CLOEXEC));
    name = std::filesystem::path(name).parent_path().string();
  }
  dir = std::move(fd);
  return true;
}

bool log_sink::open() {
  fd.reset();
  if (!dir && !open_dir()) {
    return false;
  }
  std::string base = std::filesystem::path(spec.path).filename().string();
  // O_NONBLOCK: a FIFO planted there must not block the open (it is refused
  // below); it changes nothing for a regular file.
  core::unique_fd f(::openat(
      dir.get(), base.c_str(),
      O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0640));
  if (!f) {
    // ELOOP from O_NOFOLLOW, or EACCES first where fs.protected_symlinks
    // guards a sticky directory: either way say what is there.
    int err = errno;
    struct stat lst {};
    if (err == ELOOP || (::fstatat(dir.get(), base.c_str(), &lst, AT_SYMLINK_NOFOLLOW) == 0 &&
                         S_ISLNK(lst.st_mode))) {
      failed(fmt::format("log file {} is a symbolic link: refused, not followed", spec.path));
    } else {
      failed(fmt::format("unable to open log file {}: {}", spec.path, std::strerror(err)));
    }
    return false;
  }
  struct stat st {};
  if (::fstat(f.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    failed(fmt::format("log file {} is not a regular file: refused", spec.path));
    return false;
  }
  // In a sticky shared directory another user may have created the file
  // first, to read what we write into it.
  if (dir_shared && st.st_uid != ::geteuid() && st.st_uid != 0) {
    failed(fmt::format("log file {} is owned by {} in a directory every user can write: refused",
                       spec.path, owner_of(st.st_uid)));
    return false;
  }
  fd = std::move(f);
  size = static_cast<std::uint64_t>(st.st_size);
  if (!error.empty()) {
    core::log_info("otpd: log file {} is written again; {} bytes of output were dropped", spec.path,
                   dropped);
  }
  error.clear();
  dropped = 0;
  retry_delay = std::chrono::milliseconds(0);
  return true;
}

bool log_sink::reopen() {
  dir.reset();  // the directory is checked again too: it may have been fixed
  retry_at = {};
  return open();
}

void log_sink::failed(std::string why) {
  fd.reset();
  dir.reset();
  retry_delay = retry_delay.count() == 0 ? first_retry : std::min(retry_delay * 2, max_retry);
  retry_at = clock::now() + retry_delay;
  if (error.empty()) {
    // Once per failure burst: the retries that fail too stay quiet.
    core::log_warn("otpd: {}; dropping this output (counted) and retrying with back-off", why);
  }
  error = std::move(why);
}

void log_sink::drop(std::size_t n) {
  dropped += n;
  dropped_total += n;
}

void log_sink::rotate() {
  fd.reset();
  size = 0;
  if (!dir) {
    (void)open();
    return;
  }
  // renameat moves a planted symlink itself, never what it points to; the
  // new file is then opened with O_NOFOLLOW like the first.
  std::string base = std::filesystem::path(spec.path).filename().string();
  for (int i = spec.keep - 1; i >= 1; --i) {
    ::renameat(dir.get(), fmt::format("{}.{}", base, i).c_str(), dir.get(),
               fmt::format("{}.{}", base, i + 1).c_str());
  }
  ::renameat(dir.get(), base.c_str(), dir.get(), (base + ".1").c_str());
  (void)open();
}

bool log_sink::put(const char* data, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd.get(), data, n);
    if (w < 0 && errno == EINTR) {
      continue;
    }
    if (w <= 0) {
      failed(fmt::format("unable to write log file {}: {}", spec.path,
                         w < 0 ? std::strerror(errno) : "nothing written"));
      return false;
    }
    size += static_cast<std::uint64_t>(w);
    data += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

void log_sink::write(const char* data, std::size_t n) {
  if (!fd && (clock::now() < retry_at || !open())) {
    drop(n);
    return;
  }
  // rotated: the file was just rotated and nothing written since, so a line
  // that does not fit goes in anyway (a rename that failed reopens the same
  // full file: no loop of rotations).
  bool rotated = false;
  while (n > 0) {
    std::size_t take = n;
    if (spec.rotate && size + n > spec.max_bytes) {
      std::size_t room =
          size < spec.max_bytes ? static_cast<std::size_t>(spec.max_bytes - size) : 0;
      std::string_view fits(data, std::min(room, n));
      auto nl = fits.rfind('\n');
      take = nl == std::string_view::npos ? 0 : nl + 1;
      if (take == 0 && size > 0 && !rotated) {
        rotate();
        rotated = true;
        if (!fd) {
          drop(n);
          return;
        }
        continue;
      }
      if (take == 0) {
        // One line longer than max_bytes: whole, in a file of its own.
        auto first = std::string_view(data, n).find('\n');
        take = first == std::string_view::npos ? n : first + 1;
      }
    }
    if (!put(data, take)) {
      drop(n);
      return;
    }
    data += take;
    n -= take;
    rotated = false;
  }
}

std::shared_ptr<log_sink> output_capture::sink_for(const output_spec& spec) {
  auto& s = sinks_[spec.path];
  if (!s) {
    s = std::make_shared<log_sink>();
    s->spec = spec;
    (void)s->open();
  }
  s->spec = spec;
  return s;
}

void output_capture::add(core::unique_fd read_fd, capture_target target) {
  int fd = read_fd.get();
  auto c = std::make_unique<capture>();
  c->owner = this;
  c->fd = std::move(read_fd);
  c->target = std::move(target);
  c->poll = uv::handle<uv_poll_t>::make();
  if (uv_poll_init(loop_, c->poll.get(), fd) != 0) {
    c->poll.discard();
    return;
  }
  c->poll.get()->data = c.get();
  uv_poll_start(c->poll.get(), UV_READABLE, on_readable);
  captures_[fd] = std::move(c);
}

namespace {

// All of out to otpd's own stdout or stderr, blocking as otpd's own log
// lines are (a reader that stalls stalls otpd: docker and kubectl read
// their containers' output as it comes).
void write_out(int fd, const std::string& out) {
  const char* p = out.data();
  std::size_t left = out.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return;  // nowhere to say it: otpd's own output is gone
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

}  // namespace

void output_capture::deliver(capture& c, const char* data, std::size_t n, bool flush) {
  out_.clear();
  const capture_target& t = c.target;
  auto emit = [this, &t](std::string_view line, std::int64_t wall_ms) {
    std::size_t start = out_.size();
    if (t.timestamps) {
      out_.resize(start + core::rfc3339_chars + 1);
      core::format_rfc3339_utc(wall_ms, out_.data() + start);
      out_.back() = ' ';
    }
    out_ += t.prefix;
    out_ += line;
    if (t.syslog_pri >= 0) {
      send_syslog(t, std::string_view(out_).substr(start));
      out_.resize(start);
      return;
    }
    out_ += '\n';
  };
  if (flush) {
    c.framer.flush(emit);
  } else {
    c.framer.feed(data, n, static_cast<std::int64_t>(uv_now(loop_)), core::wall_ms(), emit);
  }
  if (!out_.empty()) {
    if (t.file) {
      t.file->write(out_.data(), out_.size());
    } else if (t.out_fd >= 0) {
      write_out(t.out_fd, out_);
    }
  }
  if (c.framer.pending()) {
    partial_.insert(&c);
    arm_flush(c);
  } else {
    partial_.erase(&c);
  }
  // A burst of long lines must not keep a 64 KiB buffer per node forever.
  if (out_.capacity() > 256 * 1024) {
    std::string().swap(out_);
  }
}

// A line as one syslog message. A send that fails (syslog restarted, its
// socket replaced) reconnects and tries once more; then the line is lost,
// as syslog(3) loses it.
void output_capture::send_syslog(const capture_target& t, std::string_view text) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!syslog_) {
      auto fd = core::syslog_socket();
      if (!fd) {
        return;
      }
      syslog_ = std::move(*fd);
    }
    if (core::syslog_send(syslog_.get(), t.syslog_pri, t.ident, text)) {
      return;
    }
    syslog_.reset();
  }
}

// One timer for every partial line: it fires at the earliest one due.
void output_capture::arm_flush(capture& c) {
  std::int64_t due = c.framer.due_at();
  if (timer_at_ >= 0 && timer_at_ <= due) {
    return;
  }
  if (!flush_timer_) {
    flush_timer_ = uv::handle<uv_timer_t>::make();
    if (uv_timer_init(loop_, flush_timer_.get()) != 0) {
      flush_timer_.discard();
      return;  // the partial lines wait for their rest or for EOF
    }
    flush_timer_.get()->data = this;
    // Never what keeps the loop running.
    uv_unref(uv::as_handle(flush_timer_.get()));
  }
  auto now = static_cast<std::int64_t>(uv_now(loop_));
  timer_at_ = due;
  uv_timer_start(
      flush_timer_.get(),
      [](uv_timer_t* h) { static_cast<output_capture*>(h->data)->on_flush_timer(); },
      static_cast<std::uint64_t>(due > now ? due - now : 0), 0);
}

void output_capture::on_flush_timer() {
  timer_at_ = -1;
  auto now = static_cast<std::int64_t>(uv_now(loop_));
  std::vector<capture*> waiting(partial_.begin(), partial_.end());
  capture* next = nullptr;
  for (capture* c : waiting) {
    if (c->framer.due_at() <= now) {
      deliver(*c, nullptr, 0, true);
    } else if (next == nullptr || c->framer.due_at() < next->framer.due_at()) {
      next = c;
    }
  }
  if (next != nullptr) {
    arm_flush(*next);
  }
}

// At most 16 reads per wake-up, so one chatty child cannot starve the loop.
void output_capture::on_readable(uv_poll_t* h, int status, int /*events*/) {
  auto* c = static_cast<capture*>(h->data);
  output_capture& self = *c->owner;
  int fd = c->fd.get();
  char buf[65536];
  for (int rounds = 0; rounds < 16; ++rounds) {
    ssize_t n = status < 0 ? -1 : ::read(fd, buf, sizeof buf);
    if (n > 0) {
      self.deliver(*c, buf, static_cast<std::size_t>(n), false);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      return;
    }
    // EOF: the partial line is written, then the poll handle closes (freed
    // in its close callback), then the fd; c is gone after the erase.
    self.deliver(*c, nullptr, 0, true);
    self.partial_.erase(c);
    self.captures_.erase(fd);
    return;
  }
}

// What the children wrote before the end is still in the pipes: read it
// (without waiting for more), then write every partial line.
void output_capture::clear() {
  for (auto& [fd, c] : captures_) {
    drain(fd, *c);
  }
  partial_.clear();
  captures_.clear();
  flush_timer_.reset();
  timer_at_ = -1;
}

std::vector<output_capture::handed> output_capture::handover() {
  std::vector<handed> out;
  out.reserve(captures_.size());
  for (auto& [fd, c] : captures_) {
    drain(fd, *c);  // EOF is the loop's to see (the next process sees it too)
    out.push_back({fd, &c->target});
  }
  return out;
}

// What is in fd now, read without waiting for more (16 reads at most: a
// child writing on cannot hold us), then c's partial line written out.
void output_capture::drain(int fd, capture& c) {
  char buf[65536];
  for (int rounds = 0; rounds < 16; ++rounds) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    deliver(c, buf, static_cast<std::size_t>(n), false);
  }
  deliver(c, nullptr, 0, true);
}

std::size_t output_capture::reopen_all() {
  for (auto& [path, s] : sinks_) {
    (void)s->reopen();
  }
  return sinks_.size();
}

}  // namespace otpd::supervisor
