/*
 * dsinfer bench tokenizer: encode throughput (MB/s, tokens/s) of dsc_tokenizer_encode on a
 * multi-MB mixed text (English prose, Chinese, C code), generated deterministically here or read
 * from --file. Also reports load time and whole/streamed decode throughput.
 */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "bench_opt.h"
#include "cli_args.h"
#include "dsc_tokenizer.h"
#include "dsi_clock.h"

static const char *const words[] = {
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "had",
    "they",
    "you",
    "were",
    "their",
    "one",
    "all",
    "we",
    "can",
    "her",
    "has",
    "there",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "model",
    "network",
    "computer",
    "language",
    "research",
    "system",
    "data",
    "memory",
    "process",
    "between",
    "however",
    "different",
    "important",
    "students",
    "government",
    "century",
    "without",
    "although",
    "understanding",
    "performance",
    "distributed",
    "Paris",
    "DeepSeek",
    "January",
    "experts",
    "inference",
    "tokenizer",
    "throughput",
    "2024",
    "3.14",
};
static const char *const puncts[] = {", ", ". ", "; ", ": ", "? ", "! ", " (", ") ", " \"", "\" "};
/* Common Chinese characters (UTF-8), drawn one at a time. */
static const char hanzi[] =
    "的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能而子"
    "那得于着下自之年过发后作里用道行所然家种事成方多经么去法学如都同现当没动"
    "面起看定天分还进好小部其些主样理心她本前开但因只从想实日军者意无力它与长"
    "把机十民第公此已工使情明性知全三又关点正业外将两高间由问很最重并物手应战"
    "向头文体政美相见被利什二等产或新己制身果加西斯月话合回特代内信表化老给世"
    "位次度门任常先海通教儿原东声提立及比员解水名真论处走义各入几口认条平系气"
    "题活尔更别打女变四神总何电数安少报才结反受目太量再感建务做接必场件计管期"
    "市直德资命山金指克许统区保至队形社便空决治展马科司五基眼书非则听白却界达";
static const char *const cjk_puncts[] = {"，", "。", "、", "！", "？", "：", "“", "”"};
static const char *const code_lines[] = {
    "static int parse_header(const char *buf, size_t len, struct header *out)\n{\n",
    "    for (size_t i = 0; i < len; i++) {\n",
    "        if (buf[i] == '\\n' && i + 1 < len)\n            return -EINVAL;\n",
    "    uint32_t crc = crc32(0, (const uint8_t *)buf, len);\n",
    "    out->count = strtoul(buf + 12, NULL, 16); // hex field\n",
    "    }\n    return 0;\n}\n\n",
    "def train(model, batch_size=32, lr=3e-4):\n    optimizer = Adam(model.parameters(), lr=lr)\n",
    "    x = torch.randn(batch_size, 4096, dtype=torch.bfloat16) * 0.02\n",
    "#include <stdio.h>\n#define MAX_EXPERTS 256\n",
};

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static void append(char *buf, size_t *len, const char *s, size_t n)
{
    memcpy(buf + *len, s, n);
    *len += n;
}

/* About 1/2 English, 1/4 Chinese, 1/4 code by bytes, in paragraphs. */
static char *make_text(size_t target, size_t *len_out)
{
    char *buf = malloc(target + 4096);
    size_t len = 0;
    while (buf != NULL && len < target) {
        uint32_t kind = rnd(4);
        if (kind < 2) {
            for (int s = 0; s < 4 + (int)rnd(4); s++) {
                for (int w = 0; w < 6 + (int)rnd(10); w++) {
                    const char *word = words[rnd(NELEM(words))];
                    if (w > 0)
                        append(buf, &len, " ", 1);
                    append(buf, &len, word, strlen(word));
                }
                const char *p = puncts[rnd(NELEM(puncts))];
                append(buf, &len, p, strlen(p));
            }
            append(buf, &len, "\n\n", 2);
        } else if (kind == 2) {
            size_t n_hanzi = (sizeof(hanzi) - 1) / 3;
            for (int c = 0; c < 60 + (int)rnd(60); c++) {
                append(buf, &len, hanzi + 3 * rnd((uint32_t)n_hanzi), 3);
                if (rnd(10) == 0) {
                    const char *p = cjk_puncts[rnd(NELEM(cjk_puncts))];
                    append(buf, &len, p, strlen(p));
                }
            }
            append(buf, &len, "。\n", 4);
        } else {
            for (int l = 0; l < 3 + (int)rnd(5); l++) {
                const char *c = code_lines[rnd(NELEM(code_lines))];
                append(buf, &len, c, strlen(c));
            }
        }
    }
    *len_out = len;
    return buf;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        rewind(f);
        buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
        if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        }
        *len = (size_t)n;
    }
    fclose(f);
    return buf;
}

/* CPU time of this process: on a shared machine it is what the encoder itself cost. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: dsinfer bench tokenizer --model DIR [--mb N] [--file PATH] [--reps R]\n\n"
                 "  --model DIR   model directory with tokenizer.json (or the file itself)\n"
                 "  --mb N        size of the generated mixed text in MB (default 4)\n"
                 "  --file PATH   encode this file instead (must be valid UTF-8)\n"
                 "  --reps R      timed repetitions, the median is reported (default 5)\n");
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return v[n / 2];
}

/* Decode the ids R times whole and once streamed; prints MB/s of output text. */
static void bench_decode(const dsc_tokenizer_t *tok, const int32_t *ids, size_t n, int reps)
{
    double *times = calloc((size_t)reps, sizeof(double));
    size_t out_len = 0;
    for (int r = 0; r < reps && times != NULL; r++) {
        char *out;
        double t0 = dsi_now_s();
        if (dsc_tokenizer_decode(tok, ids, n, 0, &out, &out_len) != DSI_OK)
            break;
        times[r] = dsi_now_s() - t0;
        free(out);
    }
    dsc_decoder_t *dec;
    if (times == NULL || dsc_decoder_create(tok, 0, &dec) != DSI_OK) {
        free(times);
        return;
    }
    const char *piece;
    size_t plen, total = 0;
    double t0 = dsi_now_s();
    for (size_t i = 0; i < n; i++) {
        dsc_decoder_push(dec, ids[i], &piece, &plen);
        total += plen;
    }
    dsc_decoder_flush(dec, &piece, &plen);
    double st = dsi_now_s() - t0;
    dsc_decoder_destroy(dec);
    double dt = median(times, reps);
    printf("decode: %.1f MB/s whole (%.0f tokens/s); streamed %.1f ns/token (%zu bytes)\n",
           (double)out_len / dt / 1e6, (double)n / dt, 1e9 * st / (double)n, total + plen);
    free(times);
}

int dsinfer_bench_tokenizer(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'}, {"mb", required_argument, NULL, 'n'},
        {"file", required_argument, NULL, 'f'},  {"reps", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
    };
    const char *model = NULL, *file = NULL;
    long long mb = 4, reps = 5;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'm':
            model = optarg;
            break;
        case 'f':
            file = optarg;
            break;
        case 'n':
            if (cli_parse_int("bench tokenizer", "--mb", optarg, 1, 1024, &mb) != 0)
                return 2;
            break;
        case 'r':
            if (cli_parse_int("bench tokenizer", "--reps", optarg, 1, 1000, &reps) != 0)
                return 2;
            break;
        default:
            return bench_opt_usage(c == 'h', usage);
        }
    }
    if (model == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    dsc_tokenizer_t *tok;
    double t0 = dsi_now_s();
    if (dsc_tokenizer_load(model, &tok) != DSI_OK) {
        fprintf(stderr, "dsinfer bench tokenizer: cannot load the tokenizer of %s\n", model);
        return 1;
    }
    double load_s = dsi_now_s() - t0;
    size_t len;
    char *text = file ? read_file(file, &len) : make_text((size_t)mb << 20, &len);
    if (text == NULL) {
        fprintf(stderr, "dsinfer bench tokenizer: cannot %s %s\n", file ? "read" : "make",
                file ? file : "the text");
        dsc_tokenizer_destroy(tok);
        return 1;
    }
    printf("tokenizer: %s, %d ids, loaded in %.3f s\n", model, dsc_tokenizer_vocab_size(tok),
           load_s);
    printf("text: %s, %.2f MB\n", file ? file : "generated mixed English/Chinese/code",
           (double)len / 1e6);
    double *times = calloc(2 * (size_t)reps, sizeof(double)), *cpu = times + reps;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = 0;
    for (int r = 0; r < reps && times != NULL; r++) {
        free(ids);
        t0 = dsi_now_s();
        double c0 = cpu_s();
        if (dsc_tokenizer_encode(tok, text, len, 0, &ids, &n) != DSI_OK) {
            rc = 1;
            break;
        }
        cpu[r] = cpu_s() - c0;
        times[r] = dsi_now_s() - t0;
    }
    if (rc == 0 && times != NULL) {
        double dt = median(times, (int)reps), ct = median(cpu, (int)reps);
        printf("encode: %.1f MB/s, %.0f tokens/s (%zu tokens, %.2f bytes/token; median of %lld, "
               "one thread)\n",
               (double)len / dt / 1e6, (double)n / dt, n, (double)len / (double)n, reps);
        printf("encode per CPU second: %.1f MB/s, %.0f tokens/s\n", (double)len / ct / 1e6,
               (double)n / ct);
        bench_decode(tok, ids, n, (int)reps);
    }
    free(times);
    free(ids);
    free(text);
    dsc_tokenizer_destroy(tok);
    return rc;
}
