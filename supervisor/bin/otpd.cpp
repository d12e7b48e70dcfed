// otpd: the node daemon. Runs CONFIG's supervision tree in the foreground.
#include <unistd.h>

#include <cstdio>
#include <string>
#include <string_view>

#include <otpd/core/cli.hpp>
#include <otpd/core/log.hpp>
#include <otpd/supervisor/config.hpp>
#include <otpd/supervisor/daemon.hpp>

namespace {

// --check tells which file each command resolved to, so that a config that
// works only with some PATH shows it.
void print_programs(const otpd::supervisor::child_spec& c, const std::string& path) {
  if (!c.is_supervisor) {
    const auto& w = *c.worker;
    if (w.program_found_in != "as written") {
      std::printf("  %s: %s -> %s (%s)\n", path.c_str(), w.argv[0].c_str(), w.program.c_str(),
                  w.program_found_in.c_str());
    }
    return;
  }
  for (const auto& k : c.sup.children) {
    print_programs(k, path.empty() ? k.id : path + "/" + k.id);
  }
  if (c.sup.child_template) {
    print_programs(*c.sup.child_template, (path.empty() ? "" : path + "/") + "<template>");
  }
}

// The file otpd runs from, as a path: /proc/self/exe names the binary even
// when otpd was started through $PATH or a relative path. A binary replaced
// by a package upgrade reads "PATH (deleted)": the new one is at PATH.
std::string self_binary() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) {
    return {};
  }
  std::string path(buf, static_cast<std::size_t>(n));
  constexpr std::string_view deleted = " (deleted)";
  if (path.size() > deleted.size() &&
      path.compare(path.size() - deleted.size(), deleted.size(), deleted) == 0) {
    path.resize(path.size() - deleted.size());
  }
  return path;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace otpd::supervisor;
  otpd::core::cli::app app{
      "otpd: supervises OS processes the way an OTP node supervises its processes"};
  daemon_options o;
  bool check = false;
  std::string format = "text";
  app.add("config", o.config_path, "YAML config file").required();
  app.flag("--check", check, "validate the config and exit (0 valid, 1 invalid)");
  app.add("--runtime-dir", o.runtime_dir,
          "runtime dir (default: $OTPD_RUNTIME_DIR, then node.runtime_dir)");
  app.add("--log-format", format, "text or json").one_of({"text", "json"});
  std::string containment = "auto";
  app.add("--containment", containment,
          "auto (a cgroup per worker where possible), cgroup or pgroup (process groups)")
      .one_of({"auto", "cgroup", "pgroup"});
  // Only otpd passes these to itself (otpctl reexec): not in --help.
  app.add("--reexec-state", o.reexec_state_fd).hidden();
  bool reexec_probe = false;
  app.flag("--reexec-probe", reexec_probe).hidden();
  if (auto rc = app.parse(argc, argv)) {
    return *rc == 0 ? 0 : 100;
  }
  otpd::core::set_log_name("otpd");
  o.containment = containment == "cgroup"   ? containment_choice::cgroup
                  : containment == "pgroup" ? containment_choice::pgroup
                                            : containment_choice::automatic;
  if (reexec_probe) {
    // Asked by a running otpd before it execs us: can we load its config,
    // and which state do we read? Anything else (an older otpd, another
    // program) fails this, and the reexec is refused.
    auto cfg = load_config(o.config_path);
    if (!cfg) {
      std::fprintf(stderr, "%s\n", cfg.message().c_str());
      return 1;
    }
    std::printf("otpd reexec-state %d\n", reexec_state_version);
    return 0;
  }
  if (check) {
    auto cfg = load_config(o.config_path);
    if (!cfg) {
      std::fprintf(stderr, "%s\n", cfg.message().c_str());
      return 1;
    }
    // Limits depend on the host's cgroups (and --containment), not only on the file.
    if (std::string why = check_limits(**cfg, o.containment); !why.empty()) {
      std::fprintf(stderr, "%s\n", why.c_str());
      return 1;
    }
    // Valid anyway: a packaged config must pass where no journal runs.
    for (const auto& why : unreachable_log_targets(**cfg)) {
      std::fprintf(stderr, "%s: warning: %s\n", o.config_path.c_str(), why.c_str());
    }
    std::printf("%s: ok\n", o.config_path.c_str());
    print_programs((*cfg)->root, "");
    return 0;
  }
  o.format = format == "json" ? log_format::json : log_format::text;
  o.binary = self_binary();
  // The exec keeps the arguments, but not a previous exec's state fd.
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--reexec-state" && i + 1 < argc) {
      ++i;
    } else if (a.rfind("--reexec-state=", 0) != 0) {
      o.argv.push_back(std::move(a));
    }
  }
  return run_daemon(o);
}
