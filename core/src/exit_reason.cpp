#include <signal.h>
#include <sys/wait.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include <otpd/core/exit_reason.hpp>

namespace otpd::core {

exit_reason exit_reason::from_signal(int sig) {
  if (sig == SIGKILL) {
    return {exit_kind::killed, sig};
  }
  return {exit_kind::signal, sig};
}

exit_reason exit_reason::from_wait_status(int status) {
  if (WIFEXITED(status)) {
    return code(WEXITSTATUS(status));
  }
  if (WIFSIGNALED(status)) {
    if (WCOREDUMP(status)) {
      return {exit_kind::core_dump, WTERMSIG(status)};
    }
    return from_signal(WTERMSIG(status));
  }
  return {exit_kind::unknown, status};
}

exit_reason exit_reason::from_siginfo(int cld_code, int status) {
  switch (cld_code) {
    case CLD_EXITED:
      return code(status);
    case CLD_KILLED:
      return from_signal(status);
    case CLD_DUMPED:
      return {exit_kind::core_dump, status};
    default:
      return {exit_kind::unknown, status};
  }
}

exit_reason exit_reason::from_codes(int kind, int value) {
  if (kind < 0 || kind > exit_kind_max) {
    return {exit_kind::unknown, value};
  }
  return {static_cast<exit_kind>(kind), value};
}

std::string exit_reason::to_string() const {
  switch (kind) {
    case exit_kind::normal:
      return "normal";
    case exit_kind::exit_code:
      return "exit " + std::to_string(value);
    case exit_kind::signal:
      return "signal " + signal_name(value);
    case exit_kind::core_dump:
      return "core dumped (" + signal_name(value) + ")";
    case exit_kind::killed:
      return "killed";
    case exit_kind::shutdown:
      return "shutdown";
    case exit_kind::noproc:
      return "noproc";
    case exit_kind::unknown:
      return "unknown";
    case exit_kind::exec_failed:
      return std::string("exec failed (") + std::strerror(value) + ")";
    case exit_kind::oom_killed:
      return "oom_killed";
    case exit_kind::liveness_failed:
      return "liveness_failed";
  }
  return "unknown";
}

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  if (abbrev != nullptr) {
    return std::string("SIG") + abbrev;
  }
  return "signal " + std::to_string(sig);
}

int signal_from_name(const std::string& name) {
  if (name.empty()) {
    return 0;
  }
  if (name.find_first_not_of("0123456789") == std::string::npos) {
    int n = std::atoi(name.c_str());
    return (n > 0 && n < NSIG) ? n : 0;
  }
  std::string bare = name.rfind("SIG", 0) == 0 ? name.substr(3) : name;
  for (int sig = 1; sig < NSIG; ++sig) {
    const char* abbrev = sigabbrev_np(sig);
    if (abbrev != nullptr && bare == abbrev) {
      return sig;
    }
  }
  return 0;
}

}  // namespace otpd::core
