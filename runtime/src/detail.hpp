#pragma once

#include <sys/types.h>

#include <otpd/core/result.hpp>
#include <otpd/core/unique_fd.hpp>
#include <otpd/runtime/message.hpp>

// What task.cpp and gen_server.cpp need from the process context, beyond the
// public API.
namespace otpd::runtime::detail {

// Stops watching a child and hands its pidfd to the caller (who reaps it).
core::unique_fd forget_child(pid_t pid);
// A call that gave up: its late reply is dropped on arrival.
void abandon(const ref& r);
// Watches (and will reap) a child started outside spawn().
core::Result<void> adopt(pid_t pid, core::unique_fd pidfd);
// Delivers the signals of this signalfd as kind::system messages.
core::Result<void> set_signal_fd(int fd);
// Takes in whatever the sockets hold, without waiting.
void drain();

}  // namespace otpd::runtime::detail
