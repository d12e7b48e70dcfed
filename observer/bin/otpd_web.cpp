// otpd-web: the web observer of an otpd node. It runs as one of the node's
// workers (configs/demo.yaml), as the node's user, and talks to otpd only
// through the control socket. docs/OBSERVER.md says how to open it.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <thread>

#include "web_server.hpp"

#include <otpd/core/cli.hpp>
#include <otpd/core/main.hpp>
#include <otpd/core/runtime_dir.hpp>

namespace {

int run(int argc, char** argv) {
  otpd::core::cli::app app{"otpd-web: a live web view of an otpd node's supervision tree"};
  otpd::observer::web::options o;
  app.add("--runtime-dir", o.runtime_dir, "otpd's runtime dir (default: $OTPD_RUNTIME_DIR)");
  app.add("--bind", o.bind, "address to listen on (default 127.0.0.1)");
  app.add("--port", o.port, "port to listen on; 0 picks a free one (default)").range(0, 65535);
  app.add("--max-streams", o.max_streams, "open event streams allowed (default 32)").range(1, 1000);
  if (auto rc = app.parse(argc, argv)) {
    return *rc == 0 ? 0 : 100;
  }
  if (o.runtime_dir.empty()) {
    o.runtime_dir = otpd::core::default_runtime_dir();
  }
  // Signals go to one thread that stops the server; every other thread
  // (httplib's pool, the pump) inherits the blocked mask.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  otpd::observer::web::server srv(o);
  std::thread sig([&srv, set] {
    int s = 0;
    ::sigwait(&set, &s);
    srv.stop();
  });
  int rc = srv.run();
  // run() returned on its own (bind failed): wake the signal thread.
  ::pthread_kill(sig.native_handle(), SIGTERM);
  sig.join();
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  return otpd::core::guarded_main(argc, argv, run);
}
