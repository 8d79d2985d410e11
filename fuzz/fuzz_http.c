/*
 * fuzz_http - the HTTP request reader (coordinator/serve/dsc_http_parse.c: the http-parser
 * callbacks that build a request under the size limits) and what the server does with a complete
 * request: route lookup by path, header lookup, and for the two generation endpoints the body
 * through dsc_api_request_parse.
 *
 * Input: the bytes a client sends on one connection, possibly several pipelined requests. They
 * are fed as the server's connection loop (dsc_http_server.c, conn_process) does, without a
 * socket: parse until a request is complete (the parser pauses), hand it over, reset the parser,
 * go on; stop at the first parse error (the server answers it and closes). The connection is
 * marked as shutting down, so the only write the parser may attempt (100 Continue) is refused.
 */
#include <string.h>

#include "dsc_api.h"
#include "dsc_http_impl.h"
#include "fuzz_util.h"

static dsc_http_server_t *server;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    server = calloc(1, sizeof(*server));
    FUZZ_CHECK(server != NULL);
    dsc_http_config_default(&server->cfg);
    /* Small limits so that 413 and 431 are reachable by short inputs. */
    server->cfg.max_body_bytes = 8192;
    server->cfg.max_header_bytes = 2048;
    return 0;
}

static void handle(dsc_http_req_t *req)
{
    const char *method = dsc_http_req_method(req), *path = dsc_http_req_path(req);
    const char *query = dsc_http_req_query(req);
    FUZZ_CHECK(method != NULL && path != NULL && query != NULL);
    static const char *names[] = {"Authorization", "Content-Type", "Content-Length",   "Expect",
                                  "Connection",    "Host",         "Transfer-Encoding"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = dsc_http_req_header(req, names[i]);
        if (v != NULL)
            fuzz_touch(v, strlen(v) + 1);
    }
    size_t len;
    const char *body = dsc_http_req_body(req, &len);
    FUZZ_CHECK(body != NULL && len <= server->cfg.max_body_bytes);
    fuzz_touch(body, len);
    if (strcmp(method, "POST") != 0)
        return;
    dsc_api_kind_t kind;
    if (strcmp(path, "/v1/chat/completions") == 0)
        kind = DSC_API_KIND_CHAT;
    else if (strcmp(path, "/v1/completions") == 0)
        kind = DSC_API_KIND_COMPLETION;
    else
        return;
    dsc_api_limits_t lim;
    dsc_api_limits_default(&lim);
    dsc_api_parsed_t *p = NULL;
    dsc_api_error_t err;
    if (dsc_api_request_parse(kind, body, len, &lim, &p, &err) == DSI_OK)
        dsc_api_parsed_destroy(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dsc_http_conn_t conn;
    memset(&conn, 0, sizeof(conn));
    conn.server = server;
    conn.shutting_down = 1;
    http_parser_init(&conn.parser, HTTP_REQUEST);
    conn.parser.data = &conn;
    /* The server's pending buffer: exactly the received bytes. */
    char *pending = malloc(size ? size : 1);
    FUZZ_CHECK(pending != NULL);
    memcpy(pending, data, size);
    const char *p = pending;
    size_t left = size;
    while (left > 0) {
        if (conn.req == NULL) {
            conn.req = dsc_http_req_new(&conn);
            FUZZ_CHECK(conn.req != NULL);
        }
        size_t n = http_parser_execute(&conn.parser, &dsc_http_parser_settings, p, left);
        enum http_errno err = HTTP_PARSER_ERRNO(&conn.parser);
        FUZZ_CHECK(n <= left);
        p += n, left -= n;
        if (err == HPE_PAUSED) {
            handle(conn.req);
            dsc_http_req_free(conn.req);
            conn.req = NULL;
            conn.error_status = 0;
            http_parser_init(&conn.parser, HTTP_REQUEST);
            conn.parser.data = &conn;
            continue;
        }
        if (err != HPE_OK) {
            FUZZ_CHECK(conn.error_status == 0 ||
                       (conn.error_status >= 400 && conn.error_status < 600));
            break;
        }
        if (n == 0)
            break; /* waiting for more bytes */
    }
    dsc_http_req_free(conn.req);
    free(pending);
    return 0;
}
