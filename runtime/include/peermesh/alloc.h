/* Injectable allocation for the sans-I/O core.
 *
 * One function serves malloc, realloc and free, as Lua's lua_Alloc does:
 * `realloc(ud, ptr, size)` with size 0 frees `ptr` and returns NULL; otherwise
 * it returns a block of `size` bytes holding the old contents, or NULL when out
 * of memory (then `ptr` is untouched). Tests inject failing allocators. */
#ifndef PEERMESH_ALLOC_H
#define PEERMESH_ALLOC_H

#include <stddef.h>

typedef struct pm_allocator {
  void *(*realloc)(void *ud, void *ptr, size_t size);
  void *ud;
} pm_allocator;

/* The C library's allocator. */
const pm_allocator *pm_allocator_default(void);

#endif
