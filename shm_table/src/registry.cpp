// The node's tables: naming (a table is the segment "otpd.<node>.<name>"
// under /dev/shm), listing, and the removals a node does at start (stale
// segments) and at an orderly shutdown (everything, persistent_term areas
// included).

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "layout.hpp"
#include "segment.hpp"
#include <fmt/format.h>

#include <otpd/protocol/layout.hpp>
#include <otpd/shm_table/table.hpp>

namespace otpd::shm_table {

using core::errc;
using namespace detail;

std::string default_node() {
  const char* n = std::getenv("OTPD_NODE");
  return (n != nullptr && valid_node_name(n)) ? std::string(n) : std::string("default");
}

namespace {
bool valid_name(std::string_view s, bool allow_dot) {
  if (s.empty() || s.size() > 64) {
    return false;
  }
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || (allow_dot && c == '.');
    if (!ok) {
      return false;
    }
  }
  return true;
}
}  // namespace

bool valid_node_name(std::string_view node) noexcept {
  return valid_name(node, false);
}
bool valid_table_name(std::string_view name) noexcept {
  return valid_name(name, true);
}
std::string segment_name(std::string_view node, std::string_view name) {
  return protocol::layout::segment_name(node, name);
}

std::vector<std::string> list_tables(std::string_view node) {
  std::vector<std::string> out;
  std::string prefix = protocol::layout::segment_prefix(node);
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm", ec)) {
    std::string f = e.path().filename().string();
    if (f.size() > prefix.size() && f.compare(0, prefix.size(), prefix) == 0) {
      out.push_back(f.substr(prefix.size()));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> remove_stale(std::string_view node) {
  std::vector<std::string> removed;
  for (const auto& name : list_tables(node)) {
    std::string seg_name = segment_name(node, name);
    auto seg = open_segment(seg_name);
    bool stale = false;
    if (!seg) {
      // Created but never sized: its creator died between shm_open and ftruncate.
      stale = seg.error() == errc::busy;
    } else if ((*seg)->size() < sizeof(seg_header)) {
      stale = true;
    } else {
      auto* h = reinterpret_cast<seg_header*>((*seg)->base());
      std::uint64_t m = __atomic_load_n(&h->magic, __ATOMIC_ACQUIRE);
      if (m == 0) {
        // Not published: stale once its creator is gone.
        stale = !pid_alive_not_zombie(h->creator_pid);
      } else {
        stale =
            m != table_magic || h->version != layout_version || h->segment_size != (*seg)->size();
      }
    }
    if (stale && remove_segment(seg_name)) {
      removed.push_back(name);
    }
  }
  return removed;
}

std::size_t remove_all(std::string_view node) {
  std::size_t n = 0;
  for (const auto& name : list_tables(node)) {
    if (remove_segment(segment_name(node, name))) {
      ++n;
    }
  }
  std::string prefix = fmt::format("otpd-pt.{}.", node);
  std::error_code ec;
  std::vector<std::string> pts;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm", ec)) {
    std::string f = e.path().filename().string();
    if (f.compare(0, prefix.size(), prefix) == 0) {
      pts.push_back(f);
    }
  }
  for (const auto& f : pts) {
    if (remove_segment(f)) {
      ++n;
    }
  }
  return n;
}

}  // namespace otpd::shm_table
