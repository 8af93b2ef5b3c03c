/* A VDDK log/warn/panic sink for the tests: formats each message with
 * vsnprintf, keeps it in memory and echoes it to stderr with a tag. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char *text;
static size_t len, cap;

static void add(const char *tag, const char *fmt, va_list args)
{
    char line[8192];
    vsnprintf(line, sizeof line, fmt, args);
    size_t need = strlen(tag) + strlen(line);
    pthread_mutex_lock(&lock);
    if (len + need + 1 > cap) {
        size_t ncap = (len + need + 1) * 2;
        char *n = realloc(text, ncap);
        if (n == NULL) {
            pthread_mutex_unlock(&lock);
            return;
        }
        text = n;
        cap = ncap;
    }
    strcpy(text + len, tag);
    strcat(text + len, line);
    len += need;
    pthread_mutex_unlock(&lock);
    fprintf(stderr, "%s%s", tag, line);
}

void capture_log(const char *fmt, va_list args) { add("[log] ", fmt, args); }
void capture_warn(const char *fmt, va_list args) { add("[warn] ", fmt, args); }
void capture_panic(const char *fmt, va_list args) { add("[panic] ", fmt, args); }

/* Copies up to n bytes of everything captured; returns the full length. */
size_t capture_copy(char *out, size_t n)
{
    pthread_mutex_lock(&lock);
    size_t total = len;
    if (out != NULL && n > 0) {
        size_t k = total < n ? total : n;
        memcpy(out, text, k);
    }
    pthread_mutex_unlock(&lock);
    return total;
}
