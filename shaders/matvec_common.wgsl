// Shared by the matrix kernels (matvec, ffn_in, attn_in), in front of the kernel's own source.
// The kernel declares `p` (with k, n_tokens, x_offset, x_stride, norm, eps), the activations
// `x: array<vec4<f32>>` (token t's input row at element x_offset + t * x_stride, k elements; both
// multiples of 4) and `vecs: array<vec4<f32>>`, the model's f32 vectors (the input RMSNorm weight
// at element `norm` when NORM is set; with XN_UNIFORM instead bound on its own as the uniform
// `xn: array<vec4<f32>, XS_LEN>`).
// A workgroup has WG threads (64, fewer for small t1r4 matvecs, up to a head's rows × G in attn_in
// on GPUs); G = ROW_THREADS threads share one matrix row (1 on CPU drivers,
// where barriers are expensive); TT = TILE_T tokens (1, 4, 8 or 16) are handled per pass so that each
// dequantized weight is reused across them (prefill); matvec and ffn_in also take TT = 16.

const WG: u32 = {{WORKGROUP}}u;
const G: u32 = {{ROW_THREADS}}u;
const TT: u32 = {{TILE_T}}u;
// Passes of WG / G rows one workgroup makes in decode (matvec, ffn_in), sharing the input's
// preparation (prefill: `row_passes`).
const RPT: u32 = {{ROWS_PER_THREAD}}u;
// "No such vector" in an offset parameter.
const NONE: u32 = 0xffffffffu;

// Passes of WG / G rows each workgroup makes over a part of `rows` rows (matvec, ffn_in), the
// workgroups taking consecutive runs of passes. Decode: RPT. Prefill (TILE4): as many as the
// dispatch's size needs, where the variant's rows per thread only size the grid, so that variants
// differing in it share one compiled kernel (the host sets ROWS_PER_THREAD to 1 there; the
// tuner then compiles each prefill kernel once, not once per candidate: seconds on lavapipe).
fn row_passes(rows: u32, nwg: vec3<u32>) -> u32 {
#if TILE4
    let groups = (rows + WG / G - 1u) / (WG / G);
    let slots = nwg.x * nwg.y;
    return (groups + slots - 1u) / slots;
#else
    return RPT;
#endif
}

#if X_BROADCAST
// CPU drivers, one row per lane (G = 1): the 8 lanes of a subgroup share each block's 32 inputs,
// lane j loading elements 4j .. 4j + 4 and subgroupBroadcast handing them to the others
// (rowdot.wgsl's load_x32). Lavapipe gathers a load one word per lane unless its address is a
// compile-time uniform, which the inputs' addresses, following the loop over blocks, are not.
// Every lane then runs the row loops (ALL_LANES), rows past the matrix too (their sums unused):
// a broadcast from a lane that is not running is undefined. The kernel sets subgroup_lane.
var<private> subgroup_lane: u32;
const ALL_LANES: bool = true;
#else
const ALL_LANES: bool = false;
#endif

// Partial sums of one row for up to 16 tokens: token t0 + i in a[i] (i < 4), b[i - 4] (i < 8),
// then with TILE16 c[i - 8] (i < 12) and d[i - 12].
struct Acc {
    a: vec4<f32>,
    b: vec4<f32>,
#if TILE16
    c: vec4<f32>,
    d: vec4<f32>,
#endif
}

fn acc_zero() -> Acc {
#if TILE16
    return Acc(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
#else
    return Acc(vec4<f32>(0.0), vec4<f32>(0.0));
#endif
}

#if REDUCE
// Each thread's partial sums for the cross-lane reduction (reduce_rows).
var<workgroup> red_a: array<vec4<f32>, WG>;
var<workgroup> red_b: array<vec4<f32>, WG>;
#if TILE16
var<workgroup> red_c: array<vec4<f32>, WG>;
var<workgroup> red_d: array<vec4<f32>, WG>;
#endif
#endif
var<workgroup> red_s: array<f32, WG>;
var<workgroup> norm_scale: array<f32, 16>;

// Element i of the model's f32 vectors.
fn vec_at(i: u32) -> f32 {
    return vecs[i >> 2u][i & 3u];
}

// First element of token t's input row (t clamped: extra lanes of a tile redo the last token).
fn x_row(t: u32) -> u32 {
    return p.x_offset + min(t, p.n_tokens - 1u) * p.x_stride;
}

fn acc_at(acc: Acc, i: u32) -> f32 {
    if (i < 4u) {
        return acc.a[i];
    }
#if TILE16
    if (i < 8u) {
        return acc.b[i - 4u];
    }
    if (i < 12u) {
        return acc.c[i - 8u];
    }
    return acc.d[i - 12u];
#else
    return acc.b[i - 4u];
#endif
}

// Σ over the workgroup of each thread's `s` (every thread gets the total). All threads call it.
fn workgroup_sum(lid: u32, s: f32) -> f32 {
    red_s[lid] = s;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            red_s[lid] += red_s[lid + stride];
        }
        workgroupBarrier();
    }
    let total = red_s[0];
    workgroupBarrier();
    return total;
}

#if STAGE_X
// Decode (TT = 1) on drivers where it pays: the input row, normalised (times s and n), staged
// once per workgroup; the rows then read it from here (XS_LEN = k / 4).
var<workgroup> xs: array<vec4<f32>, {{XS_LEN}}>;
#endif

#if XN_UNIFORM
// Decode with the input row and its RMSNorm weight both bound as uniforms (`x`, `xn`; CPU
// drivers): every thread computes the row's 1/rms itself from the uniform row (uniform loads are
// scalar there: no workgroup reduction, no barrier, no separate norm dispatch), and the readers
// take x ⊙ n (rowdot.wgsl's `x4` and `dot8`).
var<private> thread_norm_scale: f32;
#endif

// Prepares the input of tokens t0 .. t0 + TT: the norm scales, and the staged row with STAGE_X.
// All threads call it.
fn prepare_input(lid: u32, t0: u32) {
#if XN_UNIFORM
    let xo = x_row(t0) >> 2u;
    var s = vec4<f32>(0.0);
#if X_BROADCAST
    // The 8 lanes of a subgroup each add up every eighth vec4 of the row, then share their sums.
    for (var j = subgroup_lane; j < p.k / 4u; j += 8u) {
        let v = x[xo + j];
        s += v * v;
    }
    s = subgroupBroadcast(s, 0u) + subgroupBroadcast(s, 1u) + subgroupBroadcast(s, 2u) + subgroupBroadcast(s, 3u)
        + subgroupBroadcast(s, 4u) + subgroupBroadcast(s, 5u) + subgroupBroadcast(s, 6u) + subgroupBroadcast(s, 7u);
#else
    for (var j = 0u; j < p.k / 4u; j++) {
        let v = x[xo + j];
        s += v * v;
    }
#endif
    thread_norm_scale = inverseSqrt(dot(s, vec4<f32>(1.0)) / f32(p.k) + p.eps);
#endif
    input_norm_scales(lid, t0);
#if STAGE_X
    let xo = x_row(t0) >> 2u;
    for (var j = lid; j < p.k / 4u; j += WG) {
#if NORM
        xs[j] = x[xo + j] * norm_scale[0] * vecs[(p.norm >> 2u) + j];
#else
        xs[j] = x[xo + j];
#endif
    }
    workgroupBarrier();
#endif
}

// With NORM: norm_scale[i] = 1 / rms(input row of token t0 + i), i < TT. All threads call it.
fn input_norm_scales(lid: u32, t0: u32) {
#if NORM
    for (var i = 0u; i < TT; i++) {
        let xo = x_row(t0 + i) >> 2u;
        var s = 0.0;
        for (var j = lid; j < p.k / 4u; j += WG) {
            let v = x[xo + j];
            s += dot(v, v);
        }
        let total = workgroup_sum(lid, s);
        if (lid == 0u) {
            norm_scale[i] = inverseSqrt(total / f32(p.k) + p.eps);
        }
    }
    workgroupBarrier();
#endif
}

// The input scale of token t0 + i: its RMSNorm factor with NORM (unless already applied to the
// staged row), else 1.
fn scale_of(i: u32) -> f32 {
#if XN_UNIFORM
    return thread_norm_scale;
#elif STAGE_X
    return 1.0;
#elif NORM
    return norm_scale[i];
#else
    return 1.0;
#endif
}

// Adds up the G lanes' partial sums of each row (REDUCE, when G > 1, through workgroup memory;
// SG_REDUCE through subgroup shuffles); lane 0 holds the total.
// All threads call it.
fn reduce_rows(lid: u32, acc: Acc) -> Acc {
#if SG_REDUCE
    // The G lanes of a row are consecutive invocations of one subgroup (G <= the adapter's
    // smallest subgroup): a butterfly of shuffles, no workgroup memory and no barrier.
    var out = acc;
    for (var stride = G / 2u; stride > 0u; stride >>= 1u) {
        out.a += subgroupShuffleXor(out.a, stride);
        out.b += subgroupShuffleXor(out.b, stride);
#if TILE16
        out.c += subgroupShuffleXor(out.c, stride);
        out.d += subgroupShuffleXor(out.d, stride);
#endif
    }
    return out;
#elif REDUCE
    red_a[lid] = acc.a;
    red_b[lid] = acc.b;
#if TILE16
    red_c[lid] = acc.c;
    red_d[lid] = acc.d;
#endif
    workgroupBarrier();
    for (var stride = G / 2u; stride > 0u; stride >>= 1u) {
        if (lid % G < stride) {
            red_a[lid] += red_a[lid + stride];
            red_b[lid] += red_b[lid + stride];
#if TILE16
            red_c[lid] += red_c[lid + stride];
            red_d[lid] += red_d[lid + stride];
#endif
        }
        workgroupBarrier();
    }
#if TILE16
    let out = Acc(red_a[lid], red_b[lid], red_c[lid], red_d[lid]);
#else
    let out = Acc(red_a[lid], red_b[lid]);
#endif
    workgroupBarrier();
    return out;
#else
    return acc;
#endif
}
