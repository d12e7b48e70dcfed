#pragma once
// The node's runtime directory, as otpd, otpctl and every runtime process see
// it: the one place that names what lives there. Shared memory segments live
// in /dev/shm, named by the node (segment_name).
//
//   DIR/control.sock    otpd's control socket (0600): the protocol of control.hpp
//   DIR/otpd.lock       flock()ed by the one otpd that serves DIR
//   DIR/mbox/<pid>      the listening socket of each process's mailbox
//   DIR/names/<name>    a symlink to ../mbox/<pid>: a registered name
#include <sys/types.h>

#include <string>
#include <string_view>

namespace otpd::protocol::layout {

[[nodiscard]] inline std::string control_socket(std::string_view dir) {
  return std::string(dir) + "/control.sock";
}
[[nodiscard]] inline std::string lock_file(std::string_view dir) {
  return std::string(dir) + "/otpd.lock";
}
// Children an operator stopped (otpctl stop), one path a line: they stay
// stopped when otpd starts again on this runtime dir.
[[nodiscard]] inline std::string held_file(std::string_view dir) {
  return std::string(dir) + "/held";
}
[[nodiscard]] inline std::string mailbox_dir(std::string_view dir) {
  return std::string(dir) + "/mbox";
}
[[nodiscard]] inline std::string mailbox_socket(std::string_view dir, pid_t pid) {
  return mailbox_dir(dir) + "/" + std::to_string(pid);
}
[[nodiscard]] inline std::string names_dir(std::string_view dir) {
  return std::string(dir) + "/names";
}
[[nodiscard]] inline std::string name_link(std::string_view dir, std::string_view name) {
  return names_dir(dir) + "/" + std::string(name);
}
// What a name's symlink points at: relative, so the directory can move.
[[nodiscard]] inline std::string name_target(pid_t pid) {
  return "../mbox/" + std::to_string(pid);
}
// The POSIX shm name of a node's table or store ("/dev/shm/otpd.<node>.<name>").
[[nodiscard]] inline std::string segment_name(std::string_view node, std::string_view name) {
  return "otpd." + std::string(node) + "." + std::string(name);
}
[[nodiscard]] inline std::string segment_prefix(std::string_view node) {
  return "otpd." + std::string(node) + ".";
}

}  // namespace otpd::protocol::layout
