/*
 * ckpt_test_helpers.h - helpers shared by the checkpoint tests (header-only, static functions):
 * capture what the code under test logs to stderr, write files, and rewrite the JSON header of a
 * safetensors file in place to break it in one precise way.
 */
#ifndef CKPT_TEST_HELPERS_H
#define CKPT_TEST_HELPERS_H

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dsi_test.h"

static int cap_saved_fd = -1;
static char cap_path[] = "/tmp/dsinfer-ckpt-stderr-XXXXXX";
static char cap_text[16384];

/* Redirect fd 2 into a temporary file until capture_end(). */
static inline void capture_begin(void)
{
    fflush(stderr);
    strcpy(cap_path, "/tmp/dsinfer-ckpt-stderr-XXXXXX");
    int fd = mkstemp(cap_path);
    if (fd < 0) {
        perror("mkstemp");
        exit(1);
    }
    cap_saved_fd = dup(2);
    dup2(fd, 2);
    close(fd);
}

/* Restore stderr, echo what was captured (indented) and return it (static buffer). */
static inline const char *capture_end(void)
{
    fflush(stderr);
    dup2(cap_saved_fd, 2);
    close(cap_saved_fd);
    FILE *fp = fopen(cap_path, "rb");
    size_t n = fp ? fread(cap_text, 1, sizeof(cap_text) - 1, fp) : 0;
    cap_text[n] = '\0';
    if (fp)
        fclose(fp);
    unlink(cap_path);
    fprintf(stderr, "  | %s", n ? cap_text : "(nothing logged)\n");
    return cap_text;
}

/* Check that the captured log contains `needle`. */
#define CHECK_LOGGED(log, needle)                                                                  \
    do {                                                                                           \
        if (strstr((log), (needle)) != NULL) {                                                     \
            dsi_test_passed++;                                                                     \
        } else {                                                                                   \
            dsi_test_failed++;                                                                     \
            fprintf(stderr, "%s:%d: log does not contain \"%s\"\n", __FILE__, __LINE__, (needle)); \
        }                                                                                          \
    } while (0)

static inline void write_file(const char *path, const void *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    if (fp == NULL || fwrite(data, 1, n, fp) != n) {
        perror(path);
        exit(1);
    }
    fclose(fp);
}

static inline void *read_file(const char *path, size_t *n_out)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        perror(path);
        exit(1);
    }
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        perror(path);
        exit(1);
    }
    buf[n] = '\0';
    fclose(fp);
    *n_out = (size_t)n;
    return buf;
}

/* A safetensors file from a header text and `data_len` bytes of data (pattern-filled). */
static inline void write_st(const char *path, const char *header, size_t data_len)
{
    size_t hl = strlen(header);
    size_t n = 8 + hl + data_len;
    unsigned char *buf = malloc(n);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    for (size_t i = 0; i < data_len; i++)
        buf[8 + hl + i] = (unsigned char)(i * 7);
    write_file(path, buf, n);
    free(buf);
}

typedef void (*json_edit_fn)(json_t *root, void *arg);

/* Rewrite the JSON header of safetensors `path` through `edit`, keeping the data bytes. */
static inline void st_edit_header(const char *path, json_edit_fn edit, void *arg)
{
    size_t n;
    unsigned char *buf = read_file(path, &n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = (hl << 8) | buf[i];
    json_error_t err;
    json_t *root = json_loadb((const char *)buf + 8, hl, 0, &err);
    if (root == NULL) {
        fprintf(stderr, "%s: %s\n", path, err.text);
        exit(1);
    }
    edit(root, arg);
    char *text = json_dumps(root, JSON_COMPACT);
    size_t tl = strlen(text);
    FILE *fp = fopen(path, "wb");
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)tl >> (8 * i));
    fwrite(len8, 1, 8, fp);
    fwrite(text, 1, tl, fp);
    fwrite(buf + 8 + hl, 1, n - 8 - hl, fp);
    fclose(fp);
    free(text);
    json_decref(root);
    free(buf);
}

/* Rewrite a JSON file (config.json, the index) through `edit`. */
static inline void json_edit_file(const char *path, json_edit_fn edit, void *arg)
{
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (root == NULL) {
        fprintf(stderr, "%s: %s\n", path, err.text);
        exit(1);
    }
    edit(root, arg);
    if (json_dump_file(root, path, JSON_INDENT(2)) != 0) {
        perror(path);
        exit(1);
    }
    json_decref(root);
}

static inline int run_cmd(const char *fmt, const char *a, const char *b)
{
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), fmt, a, b);
    return system(cmd);
}

#endif
