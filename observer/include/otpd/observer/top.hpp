#pragma once

// `otpctl top`: a live, full-screen view of the tree in a terminal (plain
// ANSI escapes: works in any 80x24 terminal over SSH, no terminfo needed),
// following the event stream so that an exit shows at once; plain lines
// when stdout is not a terminal. The drawing is pure (render_screen) and
// unit-tested; run_top owns the terminal and the session.

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <otpd/observer/model.hpp>

namespace otpd::observer {

enum class sort_key : std::uint8_t { tree, path, cpu, memory, restarts, uptime };
[[nodiscard]] std::string_view to_string(sort_key k) noexcept;

// What the user asked for and must confirm.
struct pending_action {
  std::string verb;  // restart, stop, start, kill
  std::string path;  // a child's path, or a group's key
  std::optional<pid_t> pid;
  // A group's: the path of every instance (the action goes to each, in
  // turn, after one confirmation); empty for one child.
  std::vector<std::string> paths;
};

struct view_state {
  sort_key sort = sort_key::tree;
  std::string selected;  // a path or a group's key; kept across refreshes
  int scroll = 0;        // first row shown
  std::optional<pending_action> prompt;
  std::string message;              // the outcome of the last action, or why otpd is away
  std::set<std::string> collapsed;  // the keys of groups shown without their instances
};

// The rows a view shows (the root left out), in the order of key; a row
// never moves within one key unless its figures do (ties keep tree order).
[[nodiscard]] std::vector<const child_view*> order_rows(const snapshot& s, sort_key key);

// One line of the view: a child, or the group of an `instances: N` worker
// (its instances follow it, one level deeper, unless it is collapsed).
struct display_row {
  const child_view* child = nullptr;
  const instance_group* group = nullptr;
  int depth = 0;          // for the indentation of the tree sort
  bool instance = false;  // an instance listed under its group
  [[nodiscard]] const std::string& key() const { return group ? group->key : child->path; }
};

// The rows in the order of key, with every group at the place of its
// first instance (tree) or where its sums put it among the other rows
// (the other keys: its CPU, memory and restarts summed, its longest
// uptime), and its instances right under it, sorted among themselves by
// the same key. s must outlive the rows.
[[nodiscard]] std::vector<display_row> display_rows(const snapshot& s, sort_key key,
                                                    const std::set<std::string>& collapsed);

// Child-controlled text made safe for a terminal: printable ASCII only
// (escape sequences in an id or a reason must not reach the terminal).
[[nodiscard]] std::string terminal_safe(std::string_view s);

// The screen as height lines, each at most width columns, with ANSI
// attributes (reverse video for the header and the selected row). Moves
// v.scroll so that the selected row is visible, and picks the first row
// when nothing is selected.
[[nodiscard]] std::vector<std::string> render_screen(const snapshot& s, view_state& v, int width,
                                                     int height);

// A key read from the terminal, decoded.
enum class key : std::uint8_t {
  none,
  up,
  down,
  page_up,
  page_down,
  home,
  end,
  quit,
  sort_next,
  sort_cpu,
  sort_mem,
  sort_restarts,
  sort_tree,
  sort_uptime,
  sort_path,
  restart,
  stop,
  start,
  kill,
  yes,
  toggle_group,  // space or Enter: collapse or expand the selected group
  other,
};
// Decodes the first key of in (escape sequences for arrows and pages);
// *used says how many bytes it took (0: an incomplete sequence).
[[nodiscard]] key decode_key(std::string_view in, std::size_t* used);

// Applies a key to the view. Returns the action to send when a prompt was
// confirmed.
[[nodiscard]] std::optional<pending_action> handle_key(view_state& v, key k, const snapshot& s,
                                                       int page_rows);

// The plain output: a header and a line per child (a group's line, then
// its instances indented under it); an event as one line.
[[nodiscard]] std::vector<std::string> plain_table(const snapshot& s);
[[nodiscard]] std::string plain_event(const json& ev, std::int64_t wall_ms);

struct top_options {
  std::string runtime_dir;
  bool follow = false;       // plain mode: a line per event after the table
  bool force_plain = false;  // plain even on a terminal
  std::chrono::milliseconds interval{1000};
};

// Runs until q (terminal) or, plain, after the table (or at the end of the
// event stream with follow). Returns otpctl's exit code: 0, 111 when otpd
// cannot be reached at the start.
int run_top(const top_options& opts);

}  // namespace otpd::observer
