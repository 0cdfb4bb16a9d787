/* src/plan/plan_svg.c: the curves of `mlcdn plan` as a plain SVG (no library, no script).
 *
 * x: cache size in bytes on a log axis (sizes of 0, "no tier", are left out of the lines);
 * y: a ratio from 0 to 1. One curve per tier objective: the L1's object miss ratio against
 * its size (objective objects), and the share of the requested bytes that miss both tiers
 * against the L2's size behind the chosen L1 (objective bytes: the origin's egress). A
 * dashed third line is the share of requests that miss both tiers, the quantity the target
 * is checked against, so the target shows as the horizontal line 1 - target. Error bars
 * are drawn when the curves are sampled. The chosen pair is one group of class "chosen". */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/units.h"
#include "plan/plan_int.h"

#define W 720
#define H 440
#define ML 70 /* margins: left, right, top, bottom */
#define MR 170
#define MT 30
#define MB 50

struct axis {
    double lo, hi; /* log10 of bytes */
};

static double xpos(const struct axis *a, uint64_t b)
{
    double v = log10((double)b);
    return ML + (v - a->lo) / (a->hi - a->lo) * (W - ML - MR);
}

static double ypos(double r)
{
    return MT + (1.0 - r) * (H - MT - MB);
}

/* cls: "curve" or "total"; objective: "objects", "bytes" or NULL. */
static void curve(FILE *f, const struct axis *a, const char *cls, const char *tier,
                  const char *objective, const char *color, const uint64_t *x, const double *y,
                  const double *e, int n)
{
    fprintf(f, "<polyline class=\"%s\" data-tier=\"%s\"", cls, tier);
    if (objective != NULL)
        fprintf(f, " data-objective=\"%s\"", objective);
    fprintf(f, " fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", color,
            objective == NULL ? " stroke-dasharray=\"3 3\"" : "");
    for (int i = 0; i < n; i++)
        if (x[i] > 0)
            fprintf(f, "%.1f,%.1f ", xpos(a, x[i]), ypos(y[i]));
    fprintf(f, "\"/>\n");
    for (int i = 0; i < n; i++) {
        if (x[i] == 0)
            continue;
        if (e[i] > 0)
            fprintf(f,
                    "<line class=\"errbar\" data-tier=\"%s\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" "
                    "y2=\"%.1f\" stroke=\"%s\"/>\n",
                    tier, xpos(a, x[i]), xpos(a, x[i]), ypos(y[i] + e[i] < 1 ? y[i] + e[i] : 1),
                    ypos(y[i] - e[i] > 0 ? y[i] - e[i] : 0), color);
        fprintf(f, "<circle data-tier=\"%s\" cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>\n",
                tier, xpos(a, x[i]), ypos(y[i]), color);
    }
}

static void mark(FILE *f, const struct axis *a, const char *tier, uint64_t x, double y)
{
    if (x > 0)
        fprintf(f,
                "<circle data-tier=\"%s\" cx=\"%.1f\" cy=\"%.1f\" r=\"7\" fill=\"none\" "
                "stroke=\"black\" stroke-width=\"2\"/>\n",
                tier, xpos(a, x), ypos(y));
}

int plan__svg_write(const char *path, const struct plan__svg *s, char *err, size_t errlen)
{
    struct axis a = {INFINITY, -INFINITY};
    char b[16];
    FILE *f;
    int rc = 0;

    for (int i = 0; i < s->nl1; i++)
        if (s->l1[i] > 0)
            a.lo = fmin(a.lo, log10((double)s->l1[i])), a.hi = fmax(a.hi, log10((double)s->l1[i]));
    for (int j = 0; j < s->nl2; j++)
        if (s->l2[j] > 0)
            a.lo = fmin(a.lo, log10((double)s->l2[j])), a.hi = fmax(a.hi, log10((double)s->l2[j]));
    if (!(a.hi >= a.lo)) /* only sizes of 0: any axis will do */
        a.lo = 0, a.hi = 1;
    a.lo = floor(a.lo);
    a.hi = ceil(a.hi);
    if (a.hi <= a.lo)
        a.hi = a.lo + 1;

    f = fopen(path, "w");
    if (f == NULL) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return rc;
    }
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
            "<title>mlcdn plan: miss ratio against cache size</title>\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            W, H, W, H);
    /* Axes, with a tick per power of ten and per tenth of the ratio. */
    fprintf(f,
            "<g class=\"axes\" stroke=\"#444\">\n<line x1=\"%d\" y1=\"%d\" x2=\"%d\" "
            "y2=\"%d\"/>\n<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>\n</g>\n",
            ML, H - MB, W - MR, H - MB, ML, MT, ML, H - MB);
    for (double e = a.lo; e <= a.hi + 1e-9; e += 1) {
        double x = ML + (e - a.lo) / (a.hi - a.lo) * (W - ML - MR);
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>\n"
                "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
                x, MT, x, H - MB, x, H - MB + 16,
                units_format_size((uint64_t)pow(10, e), b, sizeof(b)));
    }
    for (int k = 0; k <= 10; k += 2) {
        double y = ypos(k / 10.0);
        fprintf(f,
                "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n"
                "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.1f</text>\n",
                ML, y, W - MR, y, ML - 6, y + 4, k / 10.0);
    }
    fprintf(f,
            "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">cache size (bytes, log scale)</text>\n"
            "<text x=\"16\" y=\"%d\" transform=\"rotate(-90 16 %d)\" "
            "text-anchor=\"middle\">miss ratio</text>\n",
            (ML + W - MR) / 2, H - 12, (MT + H - MB) / 2, (MT + H - MB) / 2);
    /* The target: the share of requests allowed to reach the origin. */
    fprintf(f,
            "<line class=\"target\" x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" "
            "stroke=\"#c00\" stroke-dasharray=\"6 4\"/>\n",
            ML, ypos(1.0 - s->target), W - MR, ypos(1.0 - s->target));
    curve(f, &a, "curve", "l1", "objects", "#1f77b4", s->l1, s->l1_miss, s->l1_err, s->nl1);
    curve(f, &a, "curve", "l2", "bytes", "#ff7f0e", s->l2, s->l2_bmiss, s->l2_berr, s->nl2);
    curve(f, &a, "total", "l1+l2", NULL, "#2ca02c", s->l2, s->l2_miss, s->l2_err, s->nl2);
    /* The chosen pair: its L1 on the L1 curve, its L2 on the two lines behind it. */
    fprintf(f,
            "<g class=\"chosen\" data-l1-bytes=\"%llu\" data-l2-bytes=\"%llu\" "
            "data-hit=\"%.6f\">\n",
            (unsigned long long)s->l1[s->chosen_l1], (unsigned long long)s->l2[s->chosen_l2],
            1.0 - s->l2_miss[s->chosen_l2]);
    mark(f, &a, "l1", s->l1[s->chosen_l1], s->l1_miss[s->chosen_l1]);
    mark(f, &a, "l2", s->l2[s->chosen_l2], s->l2_bmiss[s->chosen_l2]);
    mark(f, &a, "l1+l2", s->l2[s->chosen_l2], s->l2_miss[s->chosen_l2]);
    fprintf(f, "</g>\n");
    fprintf(f, "<g class=\"legend\">\n");
    for (int i = 0; i < 5; i++) {
        static const struct {
            const char *color, *dash, *text;
        } leg[] = {
            {"#1f77b4", "", "L1: object miss ratio"},
            {"#ff7f0e", "", "L2: byte miss to origin"},
            {"#2ca02c", "3 3", "L1+L2: request miss"},
            {"#c00", "6 4", "1 - target hit"},
            {NULL, "", "chosen sizes"},
        };
        int y = MT + 10 + 20 * i, x = W - MR + 10;
        if (leg[i].color != NULL)
            fprintf(f,
                    "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" "
                    "stroke-width=\"2\" stroke-dasharray=\"%s\"/>\n",
                    x, y, x + 20, y, leg[i].color, leg[i].dash);
        else
            fprintf(f,
                    "<circle cx=\"%d\" cy=\"%d\" r=\"7\" fill=\"none\" stroke=\"black\" "
                    "stroke-width=\"2\"/>\n",
                    x + 10, y);
        fprintf(f, "<text x=\"%d\" y=\"%d\">%s</text>\n", x + 24, y + 4, leg[i].text);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\">(L2 lines: behind the chosen L1)</text>\n</g>\n",
            W - MR + 10, MT + 110);
    fprintf(f, "</svg>\n");
    if (ferror(f))
        rc = -EIO;
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    if (rc != 0)
        snprintf(err, errlen, "%s: %s", path, strerror(-rc));
    return rc;
}
