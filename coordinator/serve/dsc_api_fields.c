/*
 * dsc_api_fields.c - typed readers of one request field, shared by the parser of the request
 * (dsc_api_parse.c) and the parameter decisions (dsc_api_params.c): absent and null mean "not
 * given", a wrong type or an out-of-range value is a 400 naming the field.
 */
#include <jansson.h>

#include "dsc_api_impl.h"

#define INVALID "invalid_request_error"

int dsc_api_wrong_type(dsc_api_error_t *err, const char *param, const char *expected)
{
    return dsc_api_error_set(err, 400, INVALID, "invalid_type", param,
                             "Invalid type for '%s': expected %s.", param, expected);
}

int dsc_api_get_integer(json_t *obj, const char *key, long long lo, long long hi, long long *out,
                        int *present, dsc_api_error_t *err)
{
    json_t *v = json_object_get(obj, key);
    *present = 0;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_integer(v))
        return dsc_api_wrong_type(err, key, "an integer");
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return dsc_api_error_set(err, 400, INVALID, "invalid_value", key,
                                 "Invalid value for '%s': %lld is outside [%lld, %lld].", key, x,
                                 lo, hi);
    *out = x;
    *present = 1;
    return 0;
}

int dsc_api_get_bool(json_t *obj, const char *key, int *out, dsc_api_error_t *err)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return dsc_api_wrong_type(err, key, "a boolean");
    *out = json_is_true(v);
    return 0;
}
