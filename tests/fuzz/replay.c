/* Corpus replay driver for the fuzz targets, for builds without libFuzzer.
 *
 * Linked with one fuzz_*.c, it calls LLVMFuzzerTestOneInput once with an
 * empty input and then once per file named on the command line or found
 * (not recursively, in name order) in a directory named there, so `make
 * test` replays the committed corpora with the project's usual compiler and
 * sanitizers. A crashing input aborts the process as it would under
 * libFuzzer. Exits 0 after printing "replayed N inputs"; 2 when a path cannot
 * be read or nothing was found to replay (a wrong path must not pass). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Runs the target on one file's bytes, in a buffer of exactly that size so
 * that AddressSanitizer sees any read past the end. Returns 0 or -1. */
static int replay_file(const char *path) {
  FILE *fp = fopen(path, "rb");
  if (!fp) {
    perror(path);
    return -1;
  }
  size_t cap = 4096, len = 0;
  uint8_t *buf = malloc(cap);
  for (;;) {
    if (!buf) {
      fprintf(stderr, "%s: out of memory\n", path);
      fclose(fp);
      return -1;
    }
    len += fread(buf + len, 1, cap - len, fp);
    if (len < cap)
      break;
    cap *= 2;
    uint8_t *nb = realloc(buf, cap);
    if (!nb)
      free(buf);
    buf = nb;
  }
  int failed = ferror(fp);
  fclose(fp);
  if (failed) {
    fprintf(stderr, "%s: read error\n", path);
    free(buf);
    return -1;
  }
  uint8_t *exact = malloc(len ? len : 1);
  if (!exact) {
    free(buf);
    return -1;
  }
  if (len)
    memcpy(exact, buf, len);
  free(buf);
  LLVMFuzzerTestOneInput(exact, len);
  free(exact);
  return 0;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replays every regular file directly inside `dir`, skipping dot files.
 * Returns how many, or -1. */
static long replay_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) {
    perror(dir);
    return -1;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  long count = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      char **nn = realloc(names, cap * sizeof *nn);
      if (!nn) {
        count = -1;
        break;
      }
      names = nn;
    }
    size_t need = strlen(dir) + 1 + strlen(e->d_name) + 1;
    names[n] = malloc(need);
    if (!names[n]) {
      count = -1;
      break;
    }
    snprintf(names[n], need, "%s/%s", dir, e->d_name);
    n++;
  }
  closedir(d);
  if (n)
    qsort(names, n, sizeof *names, by_name);
  for (size_t i = 0; i < n; i++) {
    struct stat st;
    if (count >= 0 && stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
      if (replay_file(names[i]) != 0)
        count = -1;
      else
        count++;
    }
    free(names[i]);
  }
  free(names);
  return count;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
    return 2;
  }
  static const uint8_t empty[1];
  LLVMFuzzerTestOneInput(empty, 0);
  long total = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      perror(argv[i]);
      return 2;
    }
    long got = S_ISDIR(st.st_mode) ? replay_dir(argv[i])
                                   : (replay_file(argv[i]) == 0 ? 1 : -1);
    if (got < 0)
      return 2;
    total += got;
  }
  printf("replayed %ld inputs\n", total);
  return total > 0 ? 0 : 2;
}
