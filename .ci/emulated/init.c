#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/wait.h>
/* The init of .ci/emulated/run's initramfs: says whether the (emulated) CPU has AVX512_BF16,
 * runs every program in /tests (sorted by name) with the arguments in /args, and powers the
 * machine off; its own lines start with "BX". */
static int cmp(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }
int main(void) {
  mount("proc", "/proc", "proc", 0, 0);
  mount("devtmpfs", "/dev", "devtmpfs", 0, 0);
  FILE *f = fopen("/proc/cpuinfo", "r"); char line[8192];
  while (f && fgets(line, sizeof line, f)) if (!strncmp(line, "flags", 5)) {
    printf("BX avx512_bf16: %s, amx_bf16: %s\n", strstr(line, " avx512_bf16") ? "yes" : "no", strstr(line, " amx_bf16") ? "yes" : "no"); break; }
  char args[4096] = ""; FILE *a = fopen("/args", "r"); if (a) { fgets(args, sizeof args, a); args[strcspn(args, "\n")] = 0; }
  char *argv[64]; int argc = 1; for (char *t = strtok(args, " "); t && argc < 63; t = strtok(0, " ")) argv[argc++] = t; argv[argc] = 0;
  struct dirent **names; int n = scandir("/tests", &names, 0, cmp);
  for (int i = 0; i < n; i++) {
    if (names[i]->d_name[0] == '.') continue;
    char path[512]; snprintf(path, sizeof path, "/tests/%s", names[i]->d_name);
    printf("BX running %s\n", path); fflush(stdout);
    pid_t p = fork();
    if (p == 0) { argv[0] = path; setenv("RUST_TEST_THREADS", "1", 1); execv(path, argv); perror("exec"); _exit(127); }
    int st = 0; waitpid(p, &st, 0);
    printf("BX %s exit status %d\n", path, WIFEXITED(st) ? WEXITSTATUS(st) : -1); fflush(stdout);
  }
  sync(); sleep(3); reboot(RB_POWER_OFF); return 0;
}
