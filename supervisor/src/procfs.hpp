#pragma once

// What otpd reads from /proc about processes it did not spawn itself: the
// descendants of a worker (to sweep those that left its process group) and
// the parent of a pid (to know a pid is ours before signalling it).

#include <sys/types.h>

#include <vector>

namespace otpd::supervisor {

// Appends every descendant of pid (children, their children, ... up to 64
// levels), read from /proc/<pid>/task/*/children. A pid that is gone or
// unreadable contributes nothing.
void collect_descendants(pid_t pid, std::vector<pid_t>& out);

// The parent pid of pid from /proc/<pid>/stat, or -1 when it is gone.
[[nodiscard]] pid_t parent_of(pid_t pid);

// SIGKILLs and reaps every child of the calling process that is still
// alive (whatever was re-parented to it as subreaper).
void kill_own_children();

}  // namespace otpd::supervisor
