/* restart_child: the smallest supervised program. First thing in main it
 * appends "<pid> <CLOCK_MONOTONIC ns>\n" to $RESTART_CHILD_STAMP, else to
 * argv[1], else to ./stamp, then sleeps until killed (or exits at once when
 * given a second argument: the fork+exec floor). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char** argv) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const char* env = getenv("RESTART_CHILD_STAMP");
  /* The environment wins: s6-supervise passes the service name as argv[1]. */
  const char* path = env != NULL ? env : argc > 1 ? argv[1] : "./stamp";
  char line[64];
  int n = snprintf(line, sizeof line, "%d %lld\n", (int)getpid(),
                   (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd >= 0) {
    (void)!write(fd, line, (size_t)n);
    close(fd);
  }
  if (argc > 2) { /* "exit": stamp and leave (the fork+exec floor) */
    return 0;
  }
  for (;;) {
    pause();
  }
}
