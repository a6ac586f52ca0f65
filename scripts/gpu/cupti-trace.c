// A CUDA injection library (not part of HyperLlama; a profiling aid for scripts/gpu/probe.sh):
// loaded by the CUDA driver through CUDA_INJECTION64_PATH, it records every kernel, memcpy and
// memset on the GPU and every CUDA runtime call on the host (CUPTI's activity API, one clock
// for both) and appends them to $CUPTI_TRACE_OUT as fixed 32-byte records:
//   u8 kind (1 kernel, 2 memcpy, 3 memset, 4 runtime call), u8 copy kind, u16 pad,
//   u32 id (kernel: name index, runtime: callback id), u64 start ns, u64 end ns, u64 bytes
//   (kernel: grid size).
// The files are $CUPTI_TRACE_OUT.<pid>.bin; kernel names go to .<pid>.names, one per line in
// index order, and runtime calls' names to .<pid>.api as "callback-id name" lines.
// The device has no nsys; this is the least that shows where a GPU waits for its host.
#include <cupti.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BUF_SIZE (8u << 20)

struct rec {
    uint8_t kind;
    uint8_t copy_kind;
    uint16_t pad;
    uint32_t id;
    uint64_t start;
    uint64_t end;
    uint64_t bytes;
};

static FILE *out;
static FILE *names_out;
static FILE *api_out;
static uint8_t api_seen[4096];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const char **names;
static uint32_t n_names, cap_names;

static uint32_t name_id(const char *name) {
    // Names are few (hundreds) and CUPTI keeps one pointer per name: compare pointers first.
    for (uint32_t i = 0; i < n_names; i++) {
        if (names[i] == name || strcmp(names[i], name) == 0) {
            return i;
        }
    }
    if (n_names == cap_names) {
        cap_names = cap_names ? 2 * cap_names : 256;
        names = realloc(names, cap_names * sizeof *names);
    }
    names[n_names] = strdup(name);
    fprintf(names_out, "%s\n", name);
    fflush(names_out);
    return n_names++;
}

static void CUPTIAPI requested(uint8_t **buffer, size_t *size, size_t *max_records) {
    *buffer = aligned_alloc(8, BUF_SIZE);
    *size = BUF_SIZE;
    *max_records = 0;
}

static void CUPTIAPI completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size,
                               size_t valid) {
    (void)ctx;
    (void)stream;
    (void)size;
    CUpti_Activity *a = NULL;
    pthread_mutex_lock(&lock);
    while (cuptiActivityGetNextRecord(buffer, valid, &a) == CUPTI_SUCCESS) {
        struct rec r = {0};
        switch (a->kind) {
        case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL:
        case CUPTI_ACTIVITY_KIND_KERNEL: {
            CUpti_ActivityKernel10 *k = (CUpti_ActivityKernel10 *)a;
            r.kind = 1;
            r.id = name_id(k->name ? k->name : "?");
            r.start = k->start;
            r.end = k->end;
            r.bytes = (uint64_t)k->gridX * k->gridY * k->gridZ;
            break;
        }
        case CUPTI_ACTIVITY_KIND_MEMCPY: {
            CUpti_ActivityMemcpy6 *m = (CUpti_ActivityMemcpy6 *)a;
            r.kind = 2;
            r.copy_kind = m->copyKind;
            r.start = m->start;
            r.end = m->end;
            r.bytes = m->bytes;
            break;
        }
        case CUPTI_ACTIVITY_KIND_MEMSET: {
            CUpti_ActivityMemset4 *m = (CUpti_ActivityMemset4 *)a;
            r.kind = 3;
            r.start = m->start;
            r.end = m->end;
            r.bytes = m->bytes;
            break;
        }
        case CUPTI_ACTIVITY_KIND_RUNTIME: {
            CUpti_ActivityAPI *api = (CUpti_ActivityAPI *)a;
            r.kind = 4;
            r.id = api->cbid;
            if (api->cbid < sizeof api_seen && !api_seen[api->cbid]) {
                const char *name = NULL;
                api_seen[api->cbid] = 1;
                cuptiGetCallbackName(CUPTI_CB_DOMAIN_RUNTIME_API, api->cbid, &name);
                fprintf(api_out, "%u %s\n", api->cbid, name ? name : "?");
                fflush(api_out);
            }
            r.start = api->start;
            r.end = api->end;
            break;
        }
        default:
            continue;
        }
        fwrite(&r, sizeof r, 1, out);
    }
    fflush(out);
    pthread_mutex_unlock(&lock);
    free(buffer);
}

static void flush_at_exit(void) { cuptiActivityFlushAll(1); }

int InitializeInjection(void) {
    const char *path = getenv("CUPTI_TRACE_OUT");
    if (!path) {
        return 1;
    }
    char p[4096];
    int pid = (int)getpid();
    snprintf(p, sizeof p, "%s.%d.bin", path, pid);
    out = fopen(p, "wb");
    snprintf(p, sizeof p, "%s.%d.names", path, pid);
    names_out = fopen(p, "w");
    snprintf(p, sizeof p, "%s.%d.api", path, pid);
    api_out = fopen(p, "w");
    if (!out || !names_out || !api_out) {
        return 1;
    }
    cuptiActivityRegisterCallbacks(requested, completed);
    cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
    cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY);
    cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET);
    cuptiActivityEnable(CUPTI_ACTIVITY_KIND_RUNTIME);
    // Servers end by a signal: flush every half second as well as at a normal exit.
    cuptiActivityFlushPeriod(500);
    atexit(flush_at_exit);
    return 1;
}
