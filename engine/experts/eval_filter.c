/* The router hook's eval callback, filtered in C.

   llama.cpp asks an eval callback about every node of the graph before computing it (about
   1,850 nodes a token on the 4B shape), and the router hook wants some 250 of them. Each ask
   answered in Python is a ctypes round trip (the GIL taken, the arguments converted, the
   node's name fetched through another ctypes call). This answers the asks about the other
   nodes here and forwards only the wanted ones, whose names are in an open-addressing table
   the Python side fills (engine/experts/eval_filter.py, which hashes the same way).
   Measured on the 4B with nothing evicted (an AMD EPYC, AVX2, 2 cores, 256 tokens, four
   interleaved pairs): 17.85/17.45/17.19/16.11 against 15.13/16.37/15.39/15.95 tokens/s, the
   hook's Python asked 254 times a token instead of 1,850. With misses (1 and 2 GiB) no gain
   was shown beyond that machine's swings (README, the section on this filter).

   Built by setuptools as an extension module of the package (setup.py), though it is no
   Python module: it is loaded with ctypes, and without it the Python callback is used as is. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define NAME_BYTES 64 /* GGML_MAX_NAME: a node's name, its terminating zero included */

typedef bool (*eval_callback)(void *tensor, bool ask, void *user_data);
typedef const char *(*name_getter)(const void *tensor);

struct eval_filter {
    eval_callback forward;      /* the router hook's callback, for the wanted nodes */
    name_getter get_name;       /* ggml_get_name */
    uint32_t n_slots;           /* a power of two, more than the wanted names */
    const char (*slots)[NAME_BYTES]; /* wanted names at fnv1a(name) or after it; empty: "" */
};

static uint32_t fnv1a(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 16777619u;
    }
    return h;
}

bool eval_filter_callback(void *tensor, bool ask, void *user_data) {
    const struct eval_filter *f = user_data;
    const char *name = f->get_name(tensor);
    const uint32_t mask = f->n_slots - 1;
    for (uint32_t i = fnv1a(name) & mask;; i = (i + 1) & mask) {
        if (f->slots[i][0] == 0)
            return !ask; /* not wanted: computed with its neighbours; (after computing, false would stop the graph) */
        if (strncmp(f->slots[i], name, NAME_BYTES) == 0)
            return f->forward(tensor, ask, NULL);
    }
}

#ifdef _WIN32
/* setuptools exports PyInit_<name> from an extension's DLL on Windows; never called. */
__declspec(dllexport) void *PyInit__eval_filter(void) { return 0; }
#endif
