#pragma once

namespace otpd::shm_table::fault_injection {

// For crash tests only: the calling process SIGKILLs itself at the n-th
// crash point of its writes (counted from this call; 0 turns it off). The
// points are every step of a write: before and after each undo record, and
// around the commit. A test walks n = 1, 2, ... to kill a write at each of
// its instructions that matter, then checks what the survivors see.
void crash_at_point(int n) noexcept;
// The same with SIGSTOP instead of SIGKILL: the writer stops at the n-th
// point holding its stripe's lock with the stripe's counter odd, as a writer
// stopped by a debugger or a job-control signal would.
void stop_at_point(int n) noexcept;

}  // namespace otpd::shm_table::fault_injection
