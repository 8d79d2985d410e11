/*
 * bench_serve_svg.c - the small SVG chart kit of `dsinfer bench serve`'s reports: a plot area
 * with a frame, grid, ticks and labels; series as polylines with dots; vertical event markers.
 * Written by hand (no library, no script): the HTML report must render offline.
 */
#include "bench_serve.h"

#include <math.h>

static const char *const dash_styles[] = {"", " stroke-dasharray=\"6 4\"", ""};

void bs_xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

double bs_nice_max(double v)
{
    if (!(v > 0))
        return 1;
    double p = pow(10, floor(log10(v)));
    for (int i = 0; i < 3; i++) {
        double m = (double[]){1, 2, 5}[i] * p;
        if (m >= v * (1 - 1e-12))
            return m;
    }
    return 10 * p;
}

static double xform(const bs_chart_t *c, double x)
{
    return c->log_x ? log2(x > 0 ? x : 1e-9) : x;
}

double bs_chart_px(const bs_chart_t *c, double x)
{
    double lo = xform(c, c->xmin), hi = xform(c, c->xmax);
    if (!(hi > lo))
        return c->x + c->w / 2;
    return c->x + c->w * (xform(c, x) - lo) / (hi - lo);
}

double bs_chart_py(const bs_chart_t *c, double y)
{
    double v = y < 0 ? 0 : y > c->ymax ? c->ymax : y;
    return c->y + c->h - c->h * v / c->ymax;
}

void bs_chart_axes(FILE *f, const bs_chart_t *c, const char *title, const char *xlabel,
                   const char *ylabel)
{
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"14\">",
            c->x + c->w / 2, c->y - 10);
    bs_xml_text(f, title);
    fprintf(f,
            "</text>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
            "fill=\"none\" stroke=\"#333\"/>\n",
            c->x, c->y, c->w, c->h);
    for (int t = 0; t <= 4; t++) { /* y ticks and grid */
        double v = c->ymax * t / 4, y = bs_chart_py(c, v);
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">%g</text>\n",
                c->x, y, c->x + c->w, y, c->x - 6, y + 4, v);
    }
    /* x ticks: powers of two on a log axis, else multiples of a 1-2-5 step, 4 to 10 of them */
    double step = bs_nice_max((c->xmax - c->xmin) / 8);
    for (int t = 0; t <= 40; t++) {
        double v;
        if (c->log_x) {
            v = pow(2, t);
            if (v > c->xmax * 1.0001)
                break;
            if (v < c->xmin * 0.9999 || (c->xmax / c->xmin > 64 && t % 2))
                continue;
        } else {
            v = ceil(c->xmin / step) * step + t * step;
            if (v > c->xmax * (1 + 1e-9))
                break;
        }
        fprintf(f,
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\">%g</text>\n",
                bs_chart_px(c, v), c->y + c->h + 15, v);
    }
    if (xlabel != NULL) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">",
                c->x + c->w / 2, c->y + c->h + 32);
        bs_xml_text(f, xlabel);
        fprintf(f, "</text>\n");
    }
    fprintf(f,
            "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\" "
            "transform=\"rotate(-90 %.1f %.1f)\">",
            c->x - 50, c->y + c->h / 2, c->x - 50, c->y + c->h / 2);
    bs_xml_text(f, ylabel);
    fprintf(f, "</text>\n");
}

void bs_chart_line(FILE *f, const bs_chart_t *c, const double *x, const double *y, int n,
                   const char *color, const char *name, int row, int style)
{
    if (style != 2) { /* 2: dots only (points not ordered along x) */
        int open = 0;
        for (int i = 0; i < n; i++) {
            if (y[i] < 0) { /* a gap */
                if (open)
                    fprintf(f, "\"/>\n");
                open = 0;
                continue;
            }
            if (!open)
                fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\"%s points=\"",
                        color, dash_styles[style]);
            open = 1;
            fprintf(f, "%.1f,%.1f ", bs_chart_px(c, x[i]), bs_chart_py(c, y[i]));
        }
        if (open)
            fprintf(f, "\"/>\n");
    }
    if (style == 2 || n <= 64)
        for (int i = 0; i < n; i++)
            if (y[i] >= 0)
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%s\" fill=\"%s\"/>\n",
                        bs_chart_px(c, x[i]), bs_chart_py(c, y[i]), style == 2 ? "2" : "3", color);
    double lx = c->x + c->w - 150, ly = c->y + 12 + 14 * row;
    fprintf(f,
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
            "stroke-width=\"2\"%s/>\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">",
            lx, ly, lx + 18, ly, color, dash_styles[style], lx + 24, ly + 4);
    bs_xml_text(f, name);
    fprintf(f, "</text>\n");
}

void bs_chart_marker(FILE *f, const bs_chart_t *c, double x, const char *color, const char *label,
                     int label_row)
{
    double px = bs_chart_px(c, x);
    fprintf(f,
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
            "stroke-width=\"1.2\" stroke-dasharray=\"3 3\"/>\n",
            px, c->y, px, c->y + c->h, color);
    if (label != NULL) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"%s\">", px + 2,
                c->y + 10 + 11 * label_row, color);
        bs_xml_text(f, label);
        fprintf(f, "</text>\n");
    }
}
