/* Sandbox replacements for the few libc calls in Lua's C sources whose
 * wasi-libc versions import WASI functions Envoy <= 1.38 does not provide
 * (path_unlink_file, path_remove_directory, path_rename, fd_renumber), or that
 * Envoy does not implement (the CPU-time clock). scripts/wasm-cc compiles Lua
 * with -Dremove=plw_remove etc., so only Lua's call sites are redirected.
 * Each fails the ordinary C way, and Lua turns that into `nil, "<reason>"`. */
#include <errno.h>
#include <stdio.h>
#include <time.h>

int plw_remove(const char *path) {
  (void)path;
  errno = ENOTSUP;
  return -1;
}

int plw_rename(const char *from, const char *to) {
  (void)from;
  (void)to;
  errno = ENOTSUP;
  return -1;
}

/* Only lauxlib's luaL_loadfilex calls freopen (to reread a binary chunk);
 * the plugin never loads binary chunks. */
FILE *plw_freopen(const char *path, const char *mode, FILE *stream) {
  (void)path;
  (void)mode;
  if (stream != NULL) {
    fclose(stream);
  }
  errno = ENOTSUP;
  return NULL;
}

/* Envoy answers CPU-time clocks with ENOTSUP; os.clock() reports the
 * monotonic time elapsed since its first use instead, which is what
 * scripts use it for (measuring durations). */
clock_t plw_clock(void) {
  static struct timespec start;
  static int started;
  struct timespec now;
  if (clock_gettime(CLOCK_MONOTONIC, &now) != 0) {
    return (clock_t)-1;
  }
  if (!started) {
    start = now;
    started = 1;
  }
  long long ns = (long long)(now.tv_sec - start.tv_sec) * 1000000000LL +
                 (now.tv_nsec - start.tv_nsec);
  return (clock_t)(ns / (1000000000LL / CLOCKS_PER_SEC));
}
