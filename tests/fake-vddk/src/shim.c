/*
 * The one thing Rust cannot do for the fake: build a va_list. VDDK's log,
 * warn and panic callbacks take (const char *fmt, va_list); we hand them the
 * already formatted message through "%s".
 */
#include <stdarg.h>

typedef void FakeVddkLogFunc(const char *fmt, va_list args);

static void fake_vddk_call_va(FakeVddkLogFunc *func, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    func(fmt, args);
    va_end(args);
}

void fake_vddk_emit(FakeVddkLogFunc *func, const char *message)
{
    fake_vddk_call_va(func, "%s", message);
}
