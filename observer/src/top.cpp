#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <map>
#include <set>

#include <fmt/format.h>

#include <otpd/observer/session.hpp>
#include <otpd/observer/top.hpp>
#include <otpd/protocol/control.hpp>

namespace otpd::observer {

namespace proto = otpd::protocol;

std::string_view to_string(sort_key k) noexcept {
  switch (k) {
    case sort_key::tree:
      return "tree";
    case sort_key::path:
      return "path";
    case sort_key::cpu:
      return "cpu";
    case sort_key::memory:
      return "memory";
    case sort_key::restarts:
      return "restarts";
    case sort_key::uptime:
      return "uptime";
  }
  return "tree";
}

std::vector<const child_view*> order_rows(const snapshot& s, sort_key key) {
  std::vector<const child_view*> out;
  for (const auto& r : s.rows) {
    if (r.path != "/") {
      out.push_back(&r);
    }
  }
  auto by = [&](auto proj) {
    std::stable_sort(out.begin(), out.end(),
                     [&](const child_view* a, const child_view* b) { return proj(a) > proj(b); });
  };
  switch (key) {
    case sort_key::tree:
      break;
    case sort_key::path:
      std::stable_sort(out.begin(), out.end(),
                       [](const child_view* a, const child_view* b) { return a->path < b->path; });
      break;
    case sort_key::cpu:
      by([](const child_view* r) { return r->cpu_percent.value_or(-1.0); });
      break;
    case sort_key::memory:
      by([](const child_view* r) {
        return r->memory_bytes ? static_cast<double>(*r->memory_bytes) : -1.0;
      });
      break;
    case sort_key::restarts:
      by([](const child_view* r) { return r->restarts; });
      break;
    case sort_key::uptime:
      by([](const child_view* r) { return r->uptime_ms.value_or(-1); });
      break;
  }
  return out;
}

namespace {

// A row's figure for a sort key other than tree and path (higher first;
// -1 when it has none). A group's: its sums, its longest uptime.
double figure(sort_key key, const child_view* c, const instance_group* g) {
  switch (key) {
    case sort_key::cpu:
      return g ? g->cpu_percent.value_or(-1.0) : c->cpu_percent.value_or(-1.0);
    case sort_key::memory: {
      auto m = g ? g->memory_bytes : c->memory_bytes;
      return m ? static_cast<double>(*m) : -1.0;
    }
    case sort_key::restarts:
      return g ? g->restarts : c->restarts;
    case sort_key::uptime:
      return static_cast<double>(g ? g->uptime_ms.value_or(-1) : c->uptime_ms.value_or(-1));
    case sort_key::tree:
    case sort_key::path:
      break;
  }
  return 0;
}

}  // namespace

std::vector<display_row> display_rows(const snapshot& s, sort_key key,
                                      const std::set<std::string>& collapsed) {
  std::map<const child_view*, const instance_group*> group_of;
  for (const auto& g : s.groups) {
    for (std::size_t m : g.members) {
      group_of[&s.rows[m]] = &g;
    }
  }
  // The units that sort: children, and groups in place of their instances.
  std::vector<display_row> units;
  std::set<const instance_group*> placed;
  for (const auto& r : s.rows) {
    if (r.path == "/") {
      continue;
    }
    auto it = group_of.find(&r);
    if (it == group_of.end()) {
      units.push_back({&r, nullptr, r.depth, false});
    } else if (placed.insert(it->second).second) {
      units.push_back({nullptr, it->second, it->second->depth, false});
    }
  }
  auto sort = [key](auto& v) {
    if (key == sort_key::tree) {
      return;
    }
    if (key == sort_key::path) {
      std::stable_sort(v.begin(), v.end(), [](const display_row& a, const display_row& b) {
        return a.key() < b.key();
      });
      return;
    }
    std::stable_sort(v.begin(), v.end(), [key](const display_row& a, const display_row& b) {
      return figure(key, a.child, a.group) > figure(key, b.child, b.group);
    });
  };
  sort(units);
  std::vector<display_row> out;
  out.reserve(s.rows.size() + s.groups.size());
  for (const auto& u : units) {
    out.push_back(u);
    if (u.group == nullptr || collapsed.count(u.group->key) != 0) {
      continue;
    }
    std::vector<display_row> members;
    for (std::size_t m : u.group->members) {
      members.push_back({&s.rows[m], nullptr, u.group->depth + 1, true});
    }
    sort(members);
    out.insert(out.end(), members.begin(), members.end());
  }
  return out;
}

std::string terminal_safe(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    out.push_back(u >= 0x20 && u < 0x7f ? c : '?');
  }
  return out;
}

namespace {

constexpr const char* reverse = "\x1b[7m";
constexpr const char* bold = "\x1b[1m";
constexpr const char* plain = "\x1b[0m";

// s cut or padded to exactly w columns (s is printable ASCII here).
std::string fit(std::string s, int w) {
  auto width = static_cast<std::size_t>(std::max(0, w));
  if (s.size() > width) {
    if (width == 0) {
      return {};
    }
    s.resize(width - 1);
    s.push_back('~');
  }
  s.resize(width, ' ');
  return s;
}

std::string cpu_text(const child_view& r) {
  return r.cpu_percent ? fmt::format("{:.1f}", *r.cpu_percent) : "-";
}

std::string pid_text(const child_view& r) {
  return r.pid ? std::to_string(*r.pid) : "-";
}

std::string label_of(const child_view& r, sort_key key) {
  std::string label = key == sort_key::tree
                          ? std::string(static_cast<std::size_t>(std::max(0, r.depth)) * 2, ' ') +
                                terminal_safe(r.id)
                          : terminal_safe(r.path);
  if (r.supervisor) {
    label += "/";
  }
  return label;
}

// A group's name: "web x3 [-]" (its instances shown) or "web x3 [+]"
// (collapsed); "svc/web-* x3 [-]" in the flat sorts.
std::string group_label(const instance_group& g, sort_key key, bool folded) {
  std::string name = key == sort_key::tree
                         ? std::string(static_cast<std::size_t>(std::max(0, g.depth)) * 2, ' ') +
                               terminal_safe(g.id)
                         : terminal_safe(g.key);
  return fmt::format("{} x{} [{}]", name, g.total, folded ? '+' : '-');
}

std::string label_of(const display_row& d, sort_key key, const std::set<std::string>& collapsed) {
  if (d.group != nullptr) {
    return group_label(*d.group, key, collapsed.count(d.group->key) != 0);
  }
  if (key == sort_key::tree) {
    std::string label = std::string(static_cast<std::size_t>(std::max(0, d.depth)) * 2, ' ') +
                        terminal_safe(d.child->id);
    return d.child->supervisor ? label + "/" : label;
  }
  return (d.instance ? "  " : "") + label_of(*d.child, key);
}

// The instances of a group that do not run, by state, worst first:
// "1 failed, 1 backoff"; "-" when all run.
std::string not_running(const snapshot& s, const instance_group& g) {
  std::vector<std::pair<std::string, int>> counts;
  for (std::size_t m : g.members) {
    const std::string& st = s.rows[m].state;
    if (st == "running") {
      continue;
    }
    auto it =
        std::find_if(counts.begin(), counts.end(), [&](const auto& c) { return c.first == st; });
    if (it == counts.end()) {
      counts.emplace_back(st, 1);
    } else {
      ++it->second;
    }
  }
  std::stable_sort(counts.begin(), counts.end(), [](const auto& a, const auto& b) {
    return state_rank(a.first) > state_rank(b.first);
  });
  std::string out;
  for (const auto& [st, n] : counts) {
    out += fmt::format("{}{} {}", out.empty() ? "" : ", ", n, terminal_safe(st));
  }
  return out.empty() ? "-" : out;
}

std::string clock_text(std::int64_t wall);

std::string last_text(const child_view& r) {
  if (r.next_start_wall_ms) {
    return "next start " + clock_text(*r.next_start_wall_ms) + ", " +
           terminal_safe(r.last_exit.value_or("-"));
  }
  if (r.supervisor) {
    std::string s = terminal_safe(r.strategy);
    if (r.intens) {
      s += fmt::format(" {}/{} in {}s", r.intens->used, r.intens->max_restarts,
                       r.intens->max_seconds);
    }
    return s;
  }
  return terminal_safe(r.last_exit.value_or("-"));
}

// The columns after PATH: STATE PID RST UPTIME CPU% MEM, then LAST EXIT.
constexpr int fixed_cols = 1 + 8 + 1 + 7 + 1 + 4 + 1 + 7 + 1 + 5 + 1 + 6 + 1;

std::string row_text(const child_view& r, const std::string& label, int path_w, int last_w) {
  return fit(label, path_w) + " " + fit(terminal_safe(r.state), 8) + " " +
         fmt::format("{:>7}", pid_text(r)) + " " + fmt::format("{:>4}", r.restarts) + " " +
         fmt::format("{:>7}", format_uptime(r.uptime_ms)) + " " +
         fmt::format("{:>5}", cpu_text(r)) + " " +
         fmt::format("{:>6}", format_bytes(r.memory_bytes)) + " " + fit(last_text(r), last_w);
}

std::string group_text(const snapshot& s, const instance_group& g, const std::string& label,
                       int path_w, int last_w) {
  std::string cpu = g.cpu_percent ? fmt::format("{:.1f}", *g.cpu_percent) : "-";
  return fit(label, path_w) + " " + fit(terminal_safe(g.state), 8) + " " +
         fmt::format("{:>7}", fmt::format("{}/{}", g.running, g.total)) + " " +
         fmt::format("{:>4}", g.restarts) + " " + fmt::format("{:>7}", format_uptime(g.uptime_ms)) +
         " " + fmt::format("{:>5}", cpu) + " " +
         fmt::format("{:>6}", format_bytes(g.memory_bytes)) + " " + fit(not_running(s, g), last_w);
}

std::string clock_text(std::int64_t wall) {
  time_t t = static_cast<time_t>(wall / 1000);
  tm local{};
  ::localtime_r(&t, &local);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &local);
  return buf;
}

}  // namespace

namespace {

// The index of the selected row in rows, or -1. A selected instance whose
// group is collapsed selects its group.
int selected_index(const std::vector<display_row>& rows, const snapshot& s, view_state& v) {
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (rows[i].key() == v.selected) {
      return static_cast<int>(i);
    }
  }
  for (const auto& g : s.groups) {
    for (std::size_t m : g.members) {
      if (s.rows[m].path != v.selected) {
        continue;
      }
      for (std::size_t i = 0; i < rows.size(); ++i) {
        if (rows[i].group == &g) {
          v.selected = g.key;
          return static_cast<int>(i);
        }
      }
    }
  }
  return -1;
}

}  // namespace

std::vector<std::string> render_screen(const snapshot& s, view_state& v, int width, int height) {
  width = std::max(width, 40);
  height = std::max(height, 6);
  auto rows = display_rows(s, v.sort, v.collapsed);
  int children = 0;
  int running = 0;
  for (const auto& r : s.rows) {
    if (r.path != "/") {
      ++children;
      running += r.state == "running" ? 1 : 0;
    }
  }
  std::vector<std::string> out;
  std::string title = fmt::format("otpd top  node {}  otpd pid {}  {} children, {} running",
                                  terminal_safe(s.facts.node), s.facts.otpd_pid, children, running);
  std::string now = clock_text(s.taken_at_wall_ms);
  out.push_back(std::string(bold) + fit(title, width - static_cast<int>(now.size()) - 1) + " " +
                now + plain);
  out.push_back(
      fit(fmt::format("otpd rss {}  fds {}  events {}  sort: {}", format_bytes(s.facts.rss_bytes),
                      s.facts.open_fds ? std::to_string(*s.facts.open_fds) : "-",
                      s.recent_events.size(), to_string(v.sort)),
          width));
  int path_w = std::max(12, (width - fixed_cols) * 3 / 5);
  int last_w = std::max(4, width - fixed_cols - path_w);
  out.push_back(
      std::string(reverse) +
      fit(fit("PATH", path_w) + " " + fit("STATE", 8) + " " +
              fmt::format("{:>7} {:>4} {:>7} {:>5} {:>6} ", "PID", "RST", "UPTIME", "CPU%", "MEM") +
              "LAST EXIT",
          width) +
      plain);
  int page = height - 4;  // title, figures, header, footer
  // The selection: by path (a group's: by its key), so it stays on its row
  // when rows move.
  int sel = selected_index(rows, s, v);
  if (sel < 0 && !rows.empty()) {
    sel = 0;
    v.selected = rows[0].key();
  }
  if (sel >= 0) {
    if (sel < v.scroll) {
      v.scroll = sel;
    }
    if (sel >= v.scroll + page) {
      v.scroll = sel - page + 1;
    }
  }
  v.scroll = std::clamp(v.scroll, 0, std::max(0, static_cast<int>(rows.size()) - page));
  for (int i = 0; i < page; ++i) {
    int idx = v.scroll + i;
    if (idx >= static_cast<int>(rows.size())) {
      out.emplace_back();
      continue;
    }
    const display_row& d = rows[static_cast<std::size_t>(idx)];
    std::string label = label_of(d, v.sort, v.collapsed);
    std::string line = fit(d.group != nullptr ? group_text(s, *d.group, label, path_w, last_w)
                                              : row_text(*d.child, label, path_w, last_w),
                           width);
    if (idx == sel) {
      line = std::string(reverse) + line + plain;
    }
    out.push_back(std::move(line));
  }
  std::string footer;
  if (v.prompt) {
    std::string what = v.prompt->paths.empty()
                           ? (v.prompt->pid ? fmt::format(" (pid {})", *v.prompt->pid) : "")
                           : fmt::format(" (each of its {} instances)", v.prompt->paths.size());
    footer = std::string(bold) +
             fit(fmt::format("{} {}{}? y to confirm, any other key cancels", v.prompt->verb,
                             terminal_safe(v.prompt->path), what),
                 width) +
             plain;
  } else if (!v.message.empty()) {
    footer = fit(terminal_safe(v.message), width);
  } else {
    footer =
        fit("q quit  arrows  r restart  x stop  s start  k kill  space fold  o/TNPMRU sort", width);
  }
  out.push_back(std::move(footer));
  return out;
}

key decode_key(std::string_view in, std::size_t* used) {
  *used = 0;
  if (in.empty()) {
    return key::none;
  }
  if (in[0] == '\x1b') {
    if (in.size() == 1) {
      *used = 1;  // a lone escape: cancel
      return key::other;
    }
    if (in[1] != '[' && in[1] != 'O') {
      *used = 1;
      return key::other;
    }
    if (in.size() < 3) {
      return key::none;  // incomplete
    }
    char c = in[2];
    if (c >= '0' && c <= '9') {
      auto tilde = in.find('~', 2);
      if (tilde == std::string_view::npos) {
        if (in.size() > 8) {
          *used = in.size();
          return key::other;
        }
        return key::none;
      }
      *used = tilde + 1;
      std::string_view num = in.substr(2, tilde - 2);
      if (num == "5") {
        return key::page_up;
      }
      if (num == "6") {
        return key::page_down;
      }
      if (num == "1" || num == "7") {
        return key::home;
      }
      if (num == "4" || num == "8") {
        return key::end;
      }
      return key::other;
    }
    *used = 3;
    switch (c) {
      case 'A':
        return key::up;
      case 'B':
        return key::down;
      case 'H':
        return key::home;
      case 'F':
        return key::end;
      default:
        return key::other;
    }
  }
  *used = 1;
  switch (in[0]) {
    case 'q':
    case 'Q':
    case '\x03':  // ^C (the terminal is raw: no SIGINT)
      return key::quit;
    case 'o':
      return key::sort_next;
    case 'P':
      return key::sort_cpu;
    case 'M':
      return key::sort_mem;
    case 'R':
      return key::sort_restarts;
    case 'T':
      return key::sort_tree;
    case 'U':
      return key::sort_uptime;
    case 'N':
      return key::sort_path;
    case 'r':
      return key::restart;
    case 'x':
      return key::stop;
    case 's':
      return key::start;
    case 'k':
      return key::kill;
    case 'y':
    case 'Y':
      return key::yes;
    case 'j':
      return key::down;
    case ' ':
    case '\r':
    case '\n':
      return key::toggle_group;
    default:
      return key::other;
  }
}

std::optional<pending_action> handle_key(view_state& v, key k, const snapshot& s, int page_rows) {
  if (v.prompt) {
    auto p = std::move(v.prompt);
    v.prompt.reset();
    if (k == key::yes) {
      return p;
    }
    v.message = "cancelled";
    return std::nullopt;
  }
  auto rows = display_rows(s, v.sort, v.collapsed);
  int sel = std::max(0, selected_index(rows, s, v));
  int last = static_cast<int>(rows.size()) - 1;
  auto select = [&](int i) {
    if (!rows.empty()) {
      v.selected = rows[static_cast<std::size_t>(std::clamp(i, 0, last))].key();
    }
  };
  auto ask = [&](const char* verb) {
    if (rows.empty()) {
      return;
    }
    const display_row& d = rows[static_cast<std::size_t>(std::clamp(sel, 0, last))];
    if (d.group != nullptr) {
      // A group: the action goes to every instance, after one confirmation.
      pending_action a{verb, d.group->key, std::nullopt, {}};
      for (std::size_t m : d.group->members) {
        a.paths.push_back(s.rows[m].path);
      }
      v.prompt = std::move(a);
    } else {
      v.prompt = pending_action{verb, d.child->path, d.child->pid, {}};
    }
    v.message.clear();
  };
  auto toggle = [&] {
    if (rows.empty()) {
      return;
    }
    const display_row& d = rows[static_cast<std::size_t>(std::clamp(sel, 0, last))];
    const instance_group* g = d.group;
    for (const auto& x : s.groups) {
      for (std::size_t m : x.members) {
        if (g == nullptr && d.instance && &s.rows[m] == d.child) {
          g = &x;  // on an instance: fold its group, the selection on it
        }
      }
    }
    if (g == nullptr) {
      return;
    }
    if (v.collapsed.erase(g->key) == 0) {
      v.collapsed.insert(g->key);
    }
    v.selected = g->key;
  };
  switch (k) {
    case key::up:
      select(sel - 1);
      break;
    case key::down:
      select(sel + 1);
      break;
    case key::page_up:
      select(sel - std::max(1, page_rows));
      break;
    case key::page_down:
      select(sel + std::max(1, page_rows));
      break;
    case key::home:
      select(0);
      break;
    case key::end:
      select(last);
      break;
    case key::sort_next:
      v.sort = static_cast<sort_key>((static_cast<int>(v.sort) + 1) % 6);
      break;
    case key::sort_cpu:
      v.sort = sort_key::cpu;
      break;
    case key::sort_mem:
      v.sort = sort_key::memory;
      break;
    case key::sort_restarts:
      v.sort = sort_key::restarts;
      break;
    case key::sort_tree:
      v.sort = sort_key::tree;
      break;
    case key::sort_uptime:
      v.sort = sort_key::uptime;
      break;
    case key::sort_path:
      v.sort = sort_key::path;
      break;
    case key::restart:
      ask("restart");
      break;
    case key::stop:
      ask("stop");
      break;
    case key::start:
      ask("start");
      break;
    case key::kill:
      ask("kill");
      break;
    case key::toggle_group:
      toggle();
      break;
    default:
      break;
  }
  return std::nullopt;
}

std::vector<std::string> plain_table(const snapshot& s) {
  std::vector<std::string> out;
  out.push_back(fmt::format(
      "node {} (otpd pid {}), otpd rss {}, fds {}", terminal_safe(s.facts.node), s.facts.otpd_pid,
      format_bytes(s.facts.rss_bytes), s.facts.open_fds ? std::to_string(*s.facts.open_fds) : "-"));
  out.push_back(fmt::format("{:<32} {:<9} {:>8} {:>8} {:>8} {:>6} {:>7}  {}", "PATH", "STATE",
                            "PID", "RESTARTS", "UPTIME", "CPU%", "MEM", "LAST EXIT"));
  for (const auto& d : display_rows(s, sort_key::tree, {})) {
    if (d.group != nullptr) {
      const instance_group& g = *d.group;
      out.push_back(fmt::format("{:<32} {:<9} {:>8} {:>8} {:>8} {:>6} {:>7}  {}",
                                fmt::format("{} x{}", terminal_safe(g.key), g.total),
                                terminal_safe(g.state), fmt::format("{}/{}", g.running, g.total),
                                g.restarts, format_uptime(g.uptime_ms),
                                g.cpu_percent ? fmt::format("{:.1f}", *g.cpu_percent) : "-",
                                format_bytes(g.memory_bytes), not_running(s, g)));
      continue;
    }
    const child_view* r = d.child;
    out.push_back(
        fmt::format("{:<32} {:<9} {:>8} {:>8} {:>8} {:>6} {:>7}  {}",
                    (d.instance ? "  " : "") + terminal_safe(r->path) + (r->supervisor ? "/" : ""),
                    terminal_safe(r->state), pid_text(*r), r->restarts, format_uptime(r->uptime_ms),
                    cpu_text(*r), format_bytes(r->memory_bytes), last_text(*r)));
  }
  return out;
}

std::string plain_event(const json& ev, std::int64_t wall) {
  time_t t = static_cast<time_t>(wall / 1000);
  tm utc{};
  ::gmtime_r(&t, &utc);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &utc);
  std::string line = fmt::format("{}.{:03}Z {} {}", buf, wall % 1000,
                                 terminal_safe(ev.value("event", std::string("?"))),
                                 terminal_safe(ev.value("path", std::string("?"))));
  if (auto it = ev.find("pid"); it != ev.end() && it->is_number_integer()) {
    line += fmt::format(" pid={}", it->get<long long>());
  }
  if (auto it = ev.find("reason"); it != ev.end() && it->is_string()) {
    line += " reason=\"" + terminal_safe(it->get<std::string>()) + "\"";
  }
  if (auto it = ev.find("detail"); it != ev.end() && it->is_string()) {
    line += " detail=\"" + terminal_safe(it->get<std::string>()) + "\"";
  }
  return line;
}

// ---- the terminal ----------------------------------------------------------------

namespace {

volatile std::sig_atomic_t g_resized = 0;
volatile std::sig_atomic_t g_stop = 0;

extern "C" void on_winch(int /*sig*/) {
  g_resized = 1;
}
extern "C" void on_stop(int /*sig*/) {
  g_stop = 1;
}

// Raw mode, the alternate screen and a hidden cursor for the object's
// life; everything restored on the way out (even after an error).
class terminal {
 public:
  terminal() {
    if (::tcgetattr(STDIN_FILENO, &saved_) == 0) {
      termios raw = saved_;
      raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO | ISIG | IEXTEN);
      raw.c_iflag &= ~static_cast<tcflag_t>(IXON | ICRNL);
      raw.c_cc[VMIN] = 0;
      raw.c_cc[VTIME] = 0;
      have_saved_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
    }
    write_all("\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J");
  }
  ~terminal() {
    write_all("\x1b[0m\x1b[?25h\x1b[?1049l");
    if (have_saved_) {
      ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
    }
  }
  terminal(const terminal&) = delete;
  terminal& operator=(const terminal&) = delete;
  terminal(terminal&&) = delete;
  terminal& operator=(terminal&&) = delete;

  static void size(int* w, int* h) {
    winsize ws{};
    if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) {
      *w = ws.ws_col;
      *h = ws.ws_row;
    } else {
      *w = 80;
      *h = 24;
    }
  }
  static void draw(const std::vector<std::string>& lines) {
    std::string out = "\x1b[H";
    for (std::size_t i = 0; i < lines.size(); ++i) {
      out += lines[i];
      out += "\x1b[K";
      if (i + 1 < lines.size()) {
        out += "\r\n";
      }
    }
    write_all(out);
  }
  static void write_all(std::string_view s) {
    while (!s.empty()) {
      ssize_t n = ::write(STDOUT_FILENO, s.data(), s.size());
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        return;
      }
      s.remove_prefix(static_cast<std::size_t>(n));
    }
  }

 private:
  termios saved_{};
  bool have_saved_ = false;
};

json action_request(const std::string& what, const std::string& path) {
  using verb = proto::child_request::verb;
  if (what == "kill") {
    return proto::kill_request{path, {}}.to_json();
  }
  verb v = what == "restart" ? verb::restart : what == "stop" ? verb::stop : verb::start;
  return proto::child_request{v, path}.to_json();
}

// Sends a confirmed action (to each instance of a group, in turn); its
// outcome, for the footer.
std::string perform(session& s, const pending_action& act) {
  std::vector<std::string> paths = act.paths;
  if (paths.empty()) {
    paths.push_back(act.path);
  }
  std::string first_error;
  std::size_t failures = 0;
  for (const auto& p : paths) {
    auto reply = s.command(action_request(act.verb, p));
    std::string why;
    if (!reply) {
      why = reply.message();
    } else if (!proto::is_ok(*reply)) {
      why = reply->value("error", std::string("refused"));
    }
    if (!why.empty() && failures++ == 0) {
      first_error = act.paths.empty() ? why : p + ": " + why;
    }
  }
  if (act.paths.empty()) {
    return fmt::format("{} {}: {}", act.verb, act.path, failures == 0 ? "done" : first_error);
  }
  if (failures == 0) {
    return fmt::format("{} {}: done ({} instances)", act.verb, act.path, paths.size());
  }
  return fmt::format("{} {}: {} of {} failed, {}", act.verb, act.path, failures, paths.size(),
                     first_error);
}

int run_plain(session& s, const top_options& opts) {
  s.sample_now();
  // CPU % needs two samples: wait half an interval, applying events.
  auto until = steady_ms() + opts.interval.count() / 2;
  for (;;) {
    auto left = until - steady_ms();
    if (left <= 0) {
      break;
    }
    pollfd p{s.event_fd(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) > 0) {
      if (!s.pump()) {
        break;
      }
    }
  }
  if (s.is_open()) {
    (void)s.refresh_status();
    s.sample_now();
  }
  for (const auto& l : plain_table(s.tree().snap())) {
    std::printf("%s\n", l.c_str());
  }
  std::fflush(stdout);
  while (opts.follow && s.is_open() && g_stop == 0) {
    pollfd p{s.event_fd(), POLLIN, 0};
    int r = ::poll(&p, 1, -1);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    auto evs = s.pump();
    if (!evs) {
      break;  // otpd went away: the stream is over
    }
    for (const auto& ev : *evs) {
      std::printf("%s\n", plain_event(ev, wall_ms()).c_str());
    }
    std::fflush(stdout);
  }
  return 0;
}

int run_screen(session& s, const top_options& opts) {
  terminal term;
  view_state v;
  std::string input;
  std::int64_t next_tick = 0;
  std::int64_t next_reconnect = 0;
  bool dirty = true;
  while (g_stop == 0) {
    std::int64_t now = steady_ms();
    if (!s.is_open() && now >= next_reconnect) {
      if (auto r = s.open(); r) {
        v.message = "connected to otpd again";
        s.sample_now();
      } else {
        v.message =
            fmt::format("otpd does not answer at {}: {}; retrying", s.runtime_dir(), r.message());
      }
      next_reconnect = now + opts.interval.count();
      dirty = true;
    }
    if (s.is_open() && now >= next_tick) {
      if (auto r = s.tick(); !r) {
        v.message = "otpd went away: " + r.message();
      }
      next_tick = now + opts.interval.count();
      dirty = true;
    }
    int w = 80;
    int h = 24;
    terminal::size(&w, &h);
    snapshot snap = s.tree().snap();
    if (dirty || g_resized != 0) {
      if (g_resized != 0) {
        g_resized = 0;
        terminal::write_all("\x1b[2J");
      }
      terminal::draw(render_screen(snap, v, w, h));
      dirty = false;
    }
    pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {s.event_fd(), POLLIN, 0}};
    std::int64_t wake = s.is_open() ? next_tick : next_reconnect;
    int timeout = static_cast<int>(std::clamp<std::int64_t>(wake - steady_ms(), 0, 60000));
    int r = ::poll(fds, s.is_open() ? 2 : 1, timeout);
    if (r < 0 && errno != EINTR) {
      break;
    }
    if (r <= 0) {
      continue;
    }
    if ((fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0 && s.is_open()) {
      if (auto evs = s.pump(); !evs) {
        v.message = "otpd went away: " + evs.message();
      } else if (!evs->empty()) {
        // A new process: sample it now, so its memory shows at once.
        s.sample_now();
      }
      dirty = true;
    }
    if ((fds[0].revents & (POLLIN | POLLHUP)) != 0) {
      char buf[256];
      ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
        break;  // the terminal is gone
      }
      if (n > 0) {
        input.append(buf, static_cast<std::size_t>(n));
      }
      for (;;) {
        std::size_t used = 0;
        key k = decode_key(input, &used);
        if (used == 0) {
          break;
        }
        input.erase(0, used);
        if (k == key::quit && !v.prompt) {
          return 0;
        }
        snapshot cur = s.tree().snap();
        if (auto act = handle_key(v, k, cur, h - 4)) {
          v.message = perform(s, *act);
        }
        dirty = true;
      }
      if (input.size() > 64) {
        input.clear();  // garbage that never completes a key
      }
    }
  }
  return 0;
}

}  // namespace

int run_top(const top_options& opts) {
  session s(opts.runtime_dir);
  if (auto r = s.open(); !r) {
    std::fprintf(stderr,
                 "otpctl: unable to connect to otpd at %s: %s; is otpd running (check "
                 "--runtime-dir or OTPD_RUNTIME_DIR)?\n",
                 opts.runtime_dir.c_str(), r.message().c_str());
    return 111;
  }
  struct sigaction sa {};
  sa.sa_handler = on_winch;
  ::sigemptyset(&sa.sa_mask);
  ::sigaction(SIGWINCH, &sa, nullptr);
  sa.sa_handler = on_stop;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGHUP, &sa, nullptr);
  bool tty = ::isatty(STDOUT_FILENO) == 1 && ::isatty(STDIN_FILENO) == 1;
  if (!tty || opts.force_plain) {
    sa.sa_handler = on_stop;
    ::sigaction(SIGINT, &sa, nullptr);
    ::signal(SIGPIPE, SIG_IGN);
    return run_plain(s, opts);
  }
  return run_screen(s, opts);
}

}  // namespace otpd::observer
