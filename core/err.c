#include "crp/err.h"

#include <stdarg.h>
#include <stdio.h>

const char *crp_strerror(crp_err err)
{
    switch (err) {
#define CRP_ERR_TEXT(name, value, text)                                                            \
    case CRP_##name:                                                                               \
        return text;
        CRP_ERR_MAP(CRP_ERR_TEXT)
#undef CRP_ERR_TEXT
    }
    return "unknown error";
}

const char *crp_err_name(crp_err err)
{
    switch (err) {
#define CRP_ERR_NAME(name, value, text)                                                            \
    case CRP_##name:                                                                               \
        return "CRP_" #name;
        CRP_ERR_MAP(CRP_ERR_NAME)
#undef CRP_ERR_NAME
    }
    return "CRP_UNKNOWN";
}

void crp_errbuf_printf(char *errbuf, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (errbuf == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}
