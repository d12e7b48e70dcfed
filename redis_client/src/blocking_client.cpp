#include <cerrno>
#include <utility>

#include "hiredis_util.hpp"
#include <hiredis/hiredis.h>

#include <otpd/redis_client/blocking_client.hpp>

namespace otpd::redis_client {

using core::Result;

Result<blocking_client> blocking_client::connect(const endpoint& where, const options& opts) {
  detail::ignore_sigpipe_once();
  struct timeval tv = detail::to_timeval(opts.connect_timeout);
  errno = 0;
  redisContext* ctx = where.is_unix() ? redisConnectUnixWithTimeout(where.unix_path.c_str(), tv)
                                      : redisConnectWithTimeout(where.host.c_str(), where.port, tv);
  int saved = errno;
  if (ctx == nullptr) {
    return std::make_error_code(std::errc::not_enough_memory);
  }
  if (ctx->err != 0) {
    std::error_code ec = detail::error_from_hiredis(ctx->err, saved, ctx->errstr);
    redisFree(ctx);
    return ec;
  }
  detail::set_cloexec(ctx->fd);
  blocking_client client(ctx);
  if (auto r = client.set_timeout(opts.command_timeout); !r) {
    return r.error();
  }
  return client;
}

blocking_client::blocking_client(blocking_client&& other) noexcept
    : ctx_(std::exchange(other.ctx_, nullptr)),
      broken_(other.broken_),
      last_error_(std::move(other.last_error_)) {}

blocking_client& blocking_client::operator=(blocking_client&& other) noexcept {
  if (this != &other) {
    if (ctx_ != nullptr) {
      redisFree(ctx_);
    }
    ctx_ = std::exchange(other.ctx_, nullptr);
    broken_ = other.broken_;
    last_error_ = std::move(other.last_error_);
  }
  return *this;
}

blocking_client::~blocking_client() {
  if (ctx_ != nullptr) {
    redisFree(ctx_);
  }
}

bool blocking_client::connected() const noexcept {
  return ctx_ != nullptr && !broken_;
}

int blocking_client::fd() const noexcept {
  return ctx_ != nullptr ? ctx_->fd : -1;
}

std::error_code blocking_client::fail(int saved_errno) {
  // Any error of the context itself leaves the stream in an unknown place:
  // never reuse it.
  broken_ = true;
  last_error_ = ctx_->errstr;
  return detail::error_from_hiredis(ctx_->err, saved_errno, ctx_->errstr);
}

reply_result blocking_client::command(command_args args) {
  if (!connected()) {
    return core::errc::disconnected;
  }
  if (args.empty()) {
    return core::errc::invalid_argument;
  }
  errno = 0;
  void* raw = redisCommandArgv(ctx_, args.argc(), args.argv(), args.lens());
  int saved = errno;
  if (raw == nullptr) {
    return fail(saved);
  }
  auto* r = static_cast<redisReply*>(raw);
  reply out = detail::from_hiredis(r);
  freeReplyObject(r);
  return out;
}

Result<void> blocking_client::append(command_args args) {
  if (!connected()) {
    return core::errc::disconnected;
  }
  if (args.empty()) {
    return core::errc::invalid_argument;
  }
  if (redisAppendCommandArgv(ctx_, args.argc(), args.argv(), args.lens()) != REDIS_OK) {
    return fail(errno);
  }
  return {};
}

reply_result blocking_client::get_reply() {
  if (!connected()) {
    return core::errc::disconnected;
  }
  void* raw = nullptr;
  errno = 0;
  int rc = redisGetReply(ctx_, &raw);
  int saved = errno;
  if (rc != REDIS_OK || raw == nullptr) {
    if (ctx_->err == 0) {
      // No reply and no error: nothing was pending.
      return core::errc::invalid_argument;
    }
    return fail(saved);
  }
  auto* r = static_cast<redisReply*>(raw);
  reply out = detail::from_hiredis(r);
  freeReplyObject(r);
  return out;
}

Result<std::vector<reply>> blocking_client::pipeline(
    const std::vector<std::vector<std::string>>& commands) {
  for (const auto& argv : commands) {
    if (auto r = append(argv); !r) {
      return r.error();
    }
  }
  std::vector<reply> replies;
  replies.reserve(commands.size());
  for (std::size_t i = 0; i < commands.size(); ++i) {
    auto r = get_reply();
    if (!r) {
      return r.error();
    }
    replies.push_back(std::move(*r));
  }
  return replies;
}

Result<void> blocking_client::set_timeout(std::chrono::milliseconds timeout) {
  if (ctx_ == nullptr) {
    return core::errc::disconnected;
  }
  errno = 0;
  if (redisSetTimeout(ctx_, detail::to_timeval(timeout)) != REDIS_OK) {
    return fail(errno);
  }
  return {};
}

}  // namespace otpd::redis_client
