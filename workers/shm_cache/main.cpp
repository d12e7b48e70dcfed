// shm_cache_owner: the owner process of the node's shm terms cache.
//
// Creates the table (or re-adopts the one a previous owner left: the data
// survives owner restarts), reports readiness with "\n" on $OTPD_READY_FD,
// then sweeps expired entries every --sweep-ms until SIGTERM/SIGINT, which
// ends it in order and keeps the table (removing it is the node's shutdown
// job, or --remove-on-exit's).

#include <poll.h>
#include <sys/signalfd.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include <otpd/core/cli.hpp>
#include <otpd/core/log.hpp>
#include <otpd/core/main.hpp>
#include <otpd/core/ready.hpp>
#include <otpd/core/unique_fd.hpp>
#include <otpd/shm_table/table.hpp>

namespace st = otpd::shm_table;
using otpd::core::log_error;
using otpd::core::log_info;
using otpd::core::unique_fd;

namespace {

void report_ready() {
  if (auto r = otpd::core::notify_ready(); !r) {
    log_error("unable to report readiness: {}; continuing", r.message());
  }
}

}  // namespace

int run(int argc, char** argv) {
  otpd::core::set_log_name("shm_cache_owner");
  otpd::core::cli::app app{
      "Owner of the node's shm cache table: creates or re-adopts it, sweeps TTLs."};
  std::string node = st::default_node();
  std::string name = "cache";
  std::string type = "set";
  std::string access = "public";
  std::string policy = "none";
  // The defaults take about 44 MiB of /dev/shm: they fit docker's default
  // 64 MiB with room for the node's other tables.
  std::uint32_t max_entries = 65536;
  std::uint32_t max_item = 512;
  unsigned sweep_ms = 1000;
  bool fresh = false;
  bool remove_on_exit = false;
  app.add("--node", node, "node name (default $OTPD_NODE or 'default')");
  app.add("--table", name, "table name");
  app.add("--type", type, "set | ordered_set");
  app.add("--access", access, "public | protected");
  app.add("--policy", policy, "none | lru | nearest_expiry");
  app.add("--max-entries", max_entries, "capacity in entries");
  app.add("--max-item-bytes", max_item, "bound on key + value bytes");
  app.add("--sweep-ms", sweep_ms, "period of the TTL sweep");
  app.flag("--fresh", fresh, "discard an existing table instead of re-adopting it");
  app.flag("--remove-on-exit", remove_on_exit, "remove the table on SIGTERM");
  if (auto rc = app.parse(argc, argv)) {
    return *rc;
  }

  st::table_options o;
  auto t_type = st::table_type_from(type);
  auto t_access = st::access_mode_from(access);
  auto t_policy = st::eviction_from(policy);
  if (!t_type || !t_access || !t_policy || sweep_ms == 0) {
    log_error("bad --type, --access, --policy or --sweep-ms");
    return 100;
  }
  o.type = *t_type;
  o.access = *t_access;
  o.policy = *t_policy;
  o.max_entries = max_entries;
  o.max_item_bytes = max_item;

  // Signals arrive on a signalfd so the loop waits on one poll.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  unique_fd sfd(::signalfd(-1, &mask, SFD_CLOEXEC));
  if (!sfd) {
    log_error("unable to create a signalfd: {}; exiting", std::strerror(errno));
    return 111;
  }

  for (const auto& s : st::remove_stale(node)) {
    log_info("removed stale segment {} of node {}", s, node);
  }
  if (fresh) {
    (void)st::table::remove(node, name);
  }
  // A table's pages are reserved when it is created; say so plainly when
  // /dev/shm cannot hold it (docker gives a container 64 MiB by default).
  std::uint64_t need = st::segment_bytes(o);
  auto existing = st::list_tables(node);
  bool exists = std::find(existing.begin(), existing.end(), name) != existing.end();
  if (struct statvfs v{}; !exists && ::statvfs("/dev/shm", &v) == 0) {
    std::uint64_t avail = static_cast<std::uint64_t>(v.f_bavail) * v.f_frsize;
    if (need > avail) {
      log_error(
          "table {} needs {} bytes ({:.1f} MiB) of /dev/shm, which has {} bytes ({:.1f} MiB) "
          "free: lower --max-entries ({}) or --max-item-bytes ({}), or give /dev/shm more room "
          "(docker run --shm-size); exiting",
          name, need, static_cast<double>(need) / 1048576.0, avail,
          static_cast<double>(avail) / 1048576.0, max_entries, max_item);
      return 111;
    }
  }
  bool created = false;
  auto t = st::table::open_or_create(node, name, o, &created);
  if (!t) {
    log_error("unable to open table {} of node {}: {}; exiting", name, node, t.message());
    return 111;
  }
  if (!created) {
    if (auto a = t->adopt(); !a) {
      log_error("unable to adopt table {}: owner {} is alive; exiting", name, t->info().owner);
      return 1;
    }
    // A previous owner may have died inside a write: verify() repairs.
    std::string why;
    if (auto v = t->verify(&why); !v) {
      log_error("table {} is inconsistent ({}); recreating it", name, why);
      (void)st::table::remove(node, name);
      t = st::table::create(node, name, o);
      if (!t) {
        log_error("unable to recreate table {}: {}; exiting", name, t.message());
        return 111;
      }
    }
  }
  log_info("{} table {} of node {} ({} entries)", created ? "created" : "re-adopted", name, node,
           t->size());
  report_ready();

  for (;;) {
    pollfd p{sfd.get(), POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(sweep_ms));
    if (rc < 0 && errno != EINTR) {
      log_error("unable to poll: {}; exiting", std::strerror(errno));
      return 111;
    }
    if (rc > 0) {
      signalfd_siginfo si{};
      if (::read(sfd.get(), &si, sizeof si) == sizeof si) {
        log_info("signal {}: stopping, table {} {}", si.ssi_signo, name,
                 remove_on_exit ? "removed" : "kept");
        if (remove_on_exit) {
          (void)st::table::remove(node, name);
        }
        return 0;
      }
    }
    auto n = t->sweep();
    if (!n) {
      log_error("unable to sweep table {}: {}; retrying", name, n.error().message());
    }
  }
}

int main(int argc, char** argv) {
  return otpd::core::guarded_main(argc, argv, run);
}
