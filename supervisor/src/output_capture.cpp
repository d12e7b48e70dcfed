#include "output_capture.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

#include <fmt/format.h>

#include <otpd/core/log.hpp>

namespace otpd::supervisor {

void log_sink::open() {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(spec.path).parent_path(), ec);
  fd.reset(::open(spec.path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
  if (!fd) {
    core::log_warn("otpd: unable to open log file {}: {}; dropping output", spec.path,
                   std::strerror(errno));
    return;
  }
  struct stat st {};
  size = ::fstat(fd.get(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
}

void log_sink::rotate() {
  fd.reset();
  for (int i = spec.keep - 1; i >= 1; --i) {
    ::rename(fmt::format("{}.{}", spec.path, i).c_str(),
             fmt::format("{}.{}", spec.path, i + 1).c_str());
  }
  ::rename(spec.path.c_str(), (spec.path + ".1").c_str());
  open();
}

void log_sink::write(const char* data, std::size_t n) {
  while (n > 0) {
    if (spec.rotate && size >= spec.max_bytes) {
      rotate();
    }
    if (!fd) {
      return;
    }
    std::size_t room = spec.rotate ? static_cast<std::size_t>(spec.max_bytes - size) : n;
    std::size_t chunk = n < room ? n : room;
    ssize_t w = ::write(fd.get(), data, chunk);
    if (w < 0 && errno == EINTR) {
      continue;
    }
    if (w <= 0) {
      return;
    }
    size += static_cast<std::uint64_t>(w);
    data += w;
    n -= static_cast<std::size_t>(w);
  }
}

std::shared_ptr<log_sink> output_capture::sink_for(const output_spec& spec) {
  auto& s = sinks_[spec.path];
  if (!s) {
    s = std::make_shared<log_sink>();
    s->spec = spec;
    s->open();
  }
  s->spec = spec;
  return s;
}

void output_capture::add(core::unique_fd read_fd, std::shared_ptr<log_sink> sink) {
  int fd = read_fd.get();
  auto c = std::make_unique<capture>();
  c->owner = this;
  c->fd = std::move(read_fd);
  c->sink = std::move(sink);
  c->poll = uv::handle<uv_poll_t>::make();
  if (uv_poll_init(loop_, c->poll.get(), fd) != 0) {
    c->poll.discard();
    return;
  }
  c->poll.get()->data = c.get();
  uv_poll_start(c->poll.get(), UV_READABLE, on_readable);
  captures_[fd] = std::move(c);
}

// At most 16 reads per wake-up, so one chatty child cannot starve the loop.
void output_capture::on_readable(uv_poll_t* h, int status, int /*events*/) {
  auto* c = static_cast<capture*>(h->data);
  int fd = c->fd.get();
  char buf[65536];
  for (int rounds = 0; rounds < 16; ++rounds) {
    ssize_t n = status < 0 ? -1 : ::read(fd, buf, sizeof buf);
    if (n > 0) {
      c->sink->write(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      return;
    }
    // EOF: closes the poll handle (freed in its close callback), then the
    // fd; c is gone after this line.
    c->owner->captures_.erase(fd);
    return;
  }
}

std::size_t output_capture::reopen_all() {
  for (auto& [path, s] : sinks_) {
    s->fd.reset();
    s->open();
  }
  return sinks_.size();
}

}  // namespace otpd::supervisor
