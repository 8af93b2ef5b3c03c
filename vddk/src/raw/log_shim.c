/*
 * VDDK hands its log, warning and panic sinks a printf format and a
 * va_list. These three entry points format the message with vsnprintf and
 * pass the finished, NUL-terminated text to the sink the Rust side
 * registered, with a level: 0 log, 1 warning, 2 panic.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

typedef void (*vddk_rs_sink_fn)(int level, const char *msg);

/* Written once, before VixDiskLib_InitEx starts any thread that logs. */
static vddk_rs_sink_fn sink;

void vddk_rs_log_set_sink(vddk_rs_sink_fn fn) { sink = fn; }

static void route(int level, const char *fmt, va_list args) {
    char small[1024];
    va_list copy;
    int n;

    if (sink == NULL || fmt == NULL)
        return;
    va_copy(copy, args);
    n = vsnprintf(small, sizeof small, fmt, copy);
    va_end(copy);
    if (n < 0) {
        sink(level, fmt);
        return;
    }
    if ((size_t)n < sizeof small) {
        sink(level, small);
        return;
    }
    {
        char *big = malloc((size_t)n + 1);
        if (big == NULL) {
            /* Out of memory: the truncated text is better than nothing. */
            sink(level, small);
            return;
        }
        vsnprintf(big, (size_t)n + 1, fmt, args);
        sink(level, big);
        free(big);
    }
}

void vddk_rs_log_info(const char *fmt, va_list args) { route(0, fmt, args); }
void vddk_rs_log_warn(const char *fmt, va_list args) { route(1, fmt, args); }
void vddk_rs_log_panic(const char *fmt, va_list args) { route(2, fmt, args); }

/* For the crate's own tests: routes a message built from real varargs. */
void vddk_rs_log_selftest(int level, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    route(level, fmt, args);
    va_end(args);
}
