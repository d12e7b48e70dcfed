#pragma once

namespace otpd::core {

// The body of a program's main(): returns run(argc, argv). Errors are values
// in otpd, so an exception reaching here is a bug or bad_alloc: it is named
// on stderr ("<argv0>: unexpected error: ...") and the program exits 111
// instead of terminating silently.
int guarded_main(int argc, char** argv, int (*run)(int, char**));

}  // namespace otpd::core
