// A sampling CPU profiler preloaded into a program (not part of HyperLlama; a profiling aid for
// scripts/gpu/probe.sh, since the GPU machine has no perf): with CPUPROF_OUT set, every
// CPUPROF_US microseconds of the process's CPU time (ITIMER_PROF, default 250) the running
// thread records its thread id and the program counter it was interrupted at. A background
// thread appends the samples to $CPUPROF_OUT.<pid>.bin (u32 tid, u32 pad, u64 pc, u64 CLOCK_MONOTONIC ns) every
// half second, with the process's memory map in .<pid>.maps and the thread names in
// .<pid>.threads. cpu-prof.py turns them into a flat profile per thread.
// Only the interrupted program counter is taken (no unwinding), which is safe in a signal
// handler: the profile is flat, by function.
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#define CAP (1u << 22)

struct sample {
    uint32_t tid;
    uint32_t pad;
    uint64_t pc;
    uint64_t t_ns;
};

static struct sample *ring;
static _Atomic uint64_t head;
static uint64_t written;
static char base[4000];
static FILE *out;

static void on_prof(int sig, siginfo_t *info, void *uc_) {
    (void)sig;
    (void)info;
    ucontext_t *uc = uc_;
    uint64_t i = atomic_fetch_add_explicit(&head, 1, memory_order_relaxed);
    if (i - written >= CAP) {
        return; // the writer is behind: drop
    }
    struct sample *s = &ring[i % CAP];
    s->pc = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
    s->tid = (uint32_t)syscall(SYS_gettid);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    s->t_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    s->pad = 1; // complete
}

static void copy_file(const char *from, const char *to) {
    FILE *f = fopen(from, "r"), *t = fopen(to, "w");
    char buf[65536];
    size_t n;
    while (f && t && (n = fread(buf, 1, sizeof buf, f)) > 0) {
        fwrite(buf, 1, n, t);
    }
    if (f) fclose(f);
    if (t) fclose(t);
}

static void dump(void) {
    uint64_t h = atomic_load(&head);
    if (h - written > CAP) {
        h = written + CAP;
    }
    for (; written < h; written++) {
        struct sample *s = &ring[written % CAP];
        if (s->pad) {
            fwrite(s, sizeof *s, 1, out);
            s->pad = 0;
        }
    }
    fflush(out);
    char p[4200];
    snprintf(p, sizeof p, "%s.maps", base);
    copy_file("/proc/self/maps", p);
}

// Appends "tid name" lines for the threads alive now (names can change; the last wins).
static void write_threads(void) {
    char p[4200];
    snprintf(p, sizeof p, "%s.threads", base);
    FILE *t = fopen(p, "a");
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    while (t && d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char path[300], name[64];
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *c = fopen(path, "r");
        if (c && fgets(name, sizeof name, c)) {
            fprintf(t, "%s %s", e->d_name, name);
        }
        if (c) {
            fclose(c);
        }
    }
    if (d) {
        closedir(d);
    }
    if (t) {
        fclose(t);
    }
}

static void *writer(void *arg) {
    (void)arg;
    for (int n = 0;; n++) {
        usleep(500000);
        dump();
        if (n % 4 == 1) {
            write_threads();
        }
    }
    return NULL;
}

static void at_exit(void) {
    dump();
    write_threads();
}

__attribute__((constructor)) static void start(void) {
    const char *o = getenv("CPUPROF_OUT");
    if (!o) {
        return;
    }
    snprintf(base, sizeof base, "%s.%d", o, (int)getpid());
    char p[4200];
    snprintf(p, sizeof p, "%s.bin", base);
    out = fopen(p, "wb");
    ring = calloc(CAP, sizeof *ring);
    if (!out || !ring) {
        return;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_prof;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPROF, &sa, NULL);
    pthread_t th;
    pthread_create(&th, NULL, writer, NULL);
    pthread_detach(th);
    atexit(at_exit);
    const char *us = getenv("CPUPROF_US");
    long interval = us ? atol(us) : 250;
    struct itimerval it = {{0, interval}, {0, interval}};
    setitimer(ITIMER_PROF, &it, NULL);
}
