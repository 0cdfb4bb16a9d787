/* src/infer/ops/infer_vmath.c: vectorised expf, tanhf, sigmoid and row softmax
 * (see infer_kern.h).
 *
 * exp: x = n*ln2 + r with |r| <= ln2/2 (ln2 split in two so r is exact), e^r by the Cephes
 * degree-7 polynomial (about 1 ulp), then vscalefps multiplies by 2^n, which rounds
 * subnormal results correctly and gives +inf / 0 at the ends. x is clamped to
 * [-104, 88.8] first (exp is 0 / +inf in float beyond), with the operands ordered so a NaN
 * passes through the clamps and comes out as NaN.
 * tanh: odd: for |x| < 0.625 the Cephes polynomial x + x^3 P(x^2) (no cancellation near
 * 0), above 1 - 2/(e^{2|x|} + 1) with 2|x| capped at 20 (tanh is 1.0f from 9.01 up).
 * sigmoid: e = exp(-|x|) never overflows; 1/(1+e) for x >= 0, e/(1+e) below.
 * relu: vmaxps (a compiled `x > 0 ? x : 0` branches, and mispredicts on real data).
 * Without AVX-512 the same functions run libm's scalar code. */
#include <math.h>
#include <stdlib.h>

#include "infer/infer_int.h"
#include "infer/ops/infer_kern.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define INFER_X86 1
#include <immintrin.h>
#else
#define INFER_X86 0
#endif

static float sigmoid1(float x)
{
    if (x >= 0)
        return 1.0f / (1.0f + expf(-x));
    float z = expf(x);
    return z / (1.0f + z);
}

#if INFER_X86

#define T512 __attribute__((target("avx512f,fma")))
#define INLINE512 static inline __attribute__((always_inline)) T512

INLINE512 __m512 exp512(__m512 x)
{
    /* vminps/vmaxps return the second operand when either is NaN: constants go first. */
    __m512 xc = _mm512_max_ps(_mm512_set1_ps(-104.0f), _mm512_min_ps(_mm512_set1_ps(88.8f), x));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
    p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

INLINE512 __m512 abs512(__m512 x)
{
    return _mm512_castsi512_ps(
        _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff)));
}

INLINE512 __m512 tanh512(__m512 x)
{
    const __m512i sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN));
    __m512 a = abs512(x), z = _mm512_mul_ps(a, a);
    __m512 ps = _mm512_set1_ps(-5.70498872745e-3f);
    ps = _mm512_fmadd_ps(ps, z, _mm512_set1_ps(2.06390887954e-2f));
    ps = _mm512_fmadd_ps(ps, z, _mm512_set1_ps(-5.37397155531e-2f));
    ps = _mm512_fmadd_ps(ps, z, _mm512_set1_ps(1.33314422036e-1f));
    ps = _mm512_fmadd_ps(ps, z, _mm512_set1_ps(-3.33332819422e-1f));
    ps = _mm512_fmadd_ps(_mm512_mul_ps(ps, z), a, a);
    __m512 e = exp512(_mm512_min_ps(_mm512_set1_ps(20.0f), _mm512_add_ps(a, a)));
    __m512 pl = _mm512_sub_ps(_mm512_set1_ps(1.0f),
                              _mm512_div_ps(_mm512_set1_ps(2.0f),
                                            _mm512_add_ps(e, _mm512_set1_ps(1.0f))));
    __mmask16 small = _mm512_cmp_ps_mask(a, _mm512_set1_ps(0.625f), _CMP_LT_OQ);
    __m512 t = _mm512_mask_blend_ps(small, pl, ps);
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(t), sign));
}

INLINE512 __m512 sigmoid512(__m512 x)
{
    __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), abs512(x)));
    __m512 r = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(e, _mm512_set1_ps(1.0f)));
    __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_mask_mul_ps(r, neg, e, r);
}

#define MAP512(NAME, F)                                                                            \
    static T512 void NAME(const float *x, float *y, int64_t n)                                     \
    {                                                                                              \
        int64_t i = 0;                                                                             \
        for (; i + 16 <= n; i += 16)                                                               \
            _mm512_storeu_ps(y + i, F(_mm512_loadu_ps(x + i)));                                    \
        if (i < n) {                                                                               \
            __mmask16 m = (__mmask16)((1u << (n - i)) - 1);                                        \
            _mm512_mask_storeu_ps(y + i, m, F(_mm512_maskz_loadu_ps(m, x + i)));                   \
        }                                                                                          \
    }
INLINE512 __m512 relu512(__m512 x)
{
    return _mm512_max_ps(x, _mm512_setzero_ps()); /* NaN -> 0, as x > 0 ? x : 0 */
}

MAP512(vrelu512, relu512)
MAP512(vexp512, exp512)
MAP512(vtanh512, tanh512)
MAP512(vsigmoid512, sigmoid512)

static T512 void softmax512(const float *x, float *y, int64_t rows, int64_t n, bool logsm)
{
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    const __mmask16 tail = (__mmask16)((1u << (n % 16)) - 1);
    const int64_t full = n - n % 16;

    for (int64_t r = 0; r < rows; r++, x += n, y += n) {
        __m512 vm = ninf, vs = _mm512_setzero_ps();
        int64_t i;
        float mx, sum;
        for (i = 0; i < full; i += 16)
            vm = _mm512_max_ps(vm, _mm512_loadu_ps(x + i));
        if (tail)
            vm = _mm512_max_ps(vm, _mm512_mask_loadu_ps(ninf, tail, x + i));
        mx = _mm512_reduce_max_ps(vm);
        const __m512 vmx = _mm512_set1_ps(mx);
        for (i = 0; i < full; i += 16) {
            __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), vmx));
            vs = _mm512_add_ps(vs, e);
            if (!logsm)
                _mm512_storeu_ps(y + i, e);
        }
        if (tail) {
            __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + i), vmx));
            vs = _mm512_mask_add_ps(vs, tail, vs, e);
            if (!logsm)
                _mm512_mask_storeu_ps(y + i, tail, e);
        }
        sum = _mm512_reduce_add_ps(vs);
        if (logsm) {
            const __m512 sub = _mm512_set1_ps(logf(sum));
            for (i = 0; i < full; i += 16)
                _mm512_storeu_ps(y + i,
                                 _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), vmx), sub));
            if (tail)
                _mm512_mask_storeu_ps(y + i, tail,
                                      _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail,
                                                                                        x + i),
                                                                  vmx),
                                                    sub));
        } else {
            const __m512 inv = _mm512_set1_ps(1.0f / sum);
            for (i = 0; i < full; i += 16)
                _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(y + i), inv));
            if (tail)
                _mm512_mask_storeu_ps(y + i, tail,
                                      _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, y + i), inv));
        }
    }
}

#define HAVE512() (infer__cpu_level() >= INFER_CPU_AVX512)
#else
#define HAVE512() 0
#define vrelu512(x, y, n) ((void)0)
#define vexp512(x, y, n) ((void)0)
#define vtanh512(x, y, n) ((void)0)
#define vsigmoid512(x, y, n) ((void)0)
#define softmax512(x, y, r, n, l) ((void)0)
#endif /* INFER_X86 */

void infer__vreluf(const float *x, float *y, int64_t n)
{
    if (HAVE512()) {
        vrelu512(x, y, n);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] > 0 ? x[i] : 0.0f;
}

void infer__vexpf(const float *x, float *y, int64_t n)
{
    if (HAVE512()) {
        vexp512(x, y, n);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        y[i] = expf(x[i]);
}

void infer__vtanhf(const float *x, float *y, int64_t n)
{
    if (HAVE512()) {
        vtanh512(x, y, n);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        y[i] = tanhf(x[i]);
}

void infer__vsigmoidf(const float *x, float *y, int64_t n)
{
    if (HAVE512()) {
        vsigmoid512(x, y, n);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        y[i] = sigmoid1(x[i]);
}

void infer__softmax_rowsf(const float *x, float *y, int64_t rows, int64_t n, bool logsm)
{
    if (n <= 0)
        return;
    if (HAVE512()) {
        softmax512(x, y, rows, n, logsm);
        return;
    }
    for (int64_t r = 0; r < rows; r++, x += n, y += n) {
        float mx = x[0], sum = 0;
        for (int64_t i = 1; i < n; i++)
            mx = x[i] > mx ? x[i] : mx;
        for (int64_t i = 0; i < n; i++) {
            float v = expf(x[i] - mx);
            y[i] = v;
            sum += v;
        }
        if (logsm) {
            float ls = logf(sum);
            for (int64_t i = 0; i < n; i++)
                y[i] = x[i] - mx - ls;
        } else {
            float inv = 1.0f / sum;
            for (int64_t i = 0; i < n; i++)
                y[i] *= inv;
        }
    }
}
