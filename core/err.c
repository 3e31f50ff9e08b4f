#include "crp/err.h"

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
