// y[t, row_offset + r] (+)= s_t · Σ_k W[first_row + r, k] · n[k] · x[t, k]   for r < rows of one
// row-part of a quantized matrix, then an optional soft-cap y = c · tanh(y / c) (before the add).
//
// wq_0: the part's rows, raw GGML blocks, row i at byte i * row_bytes           W: [part rows, k]
// x:    f32 activations, token t's row at element x_offset + t * x_stride       x: [n_tokens, k]
// y:    f32 outputs, token t's row at element t * y_stride                      y: [n_tokens, N]
// With NORM the input is RMSNorm-ed on the fly: s_t = 1 / rms(x[t]) and n = vecs[norm ..];
// otherwise s_t = n[k] = 1. A workgroup handles passes · WG / G rows (`row_passes` of WG / G
// rows, sharing the input's preparation) for every token, TT tokens per pass.

struct Params {
    k: u32,
    n_tokens: u32,
    x_offset: u32,
    x_stride: u32,
    norm: u32,
    eps: f32,
    rows: u32,
    row_offset: u32,
    first_row: u32,
    row_bytes: u32,
    y_stride: u32,
    accumulate: u32,
    softcap: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#if X_UNIFORM
// Decode with the input row bound as a uniform (faster to read on CPU drivers): XS_LEN = k / 4.
@group(0) @binding(2) var<uniform> x: array<vec4<f32>, {{XS_LEN}}>;
#else
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
#endif
@group(0) @binding(3) var<storage, read> vecs: array<vec4<f32>>;
#if TX0
@group(0) @binding(4) var wq_0: texture_storage_2d<rgba32uint, read>;
#elif V40
@group(0) @binding(4) var<storage, read> wq_0: array<vec4<u32>>;
#else
@group(0) @binding(4) var<storage, read> wq_0: array<u32>;
#endif
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
#if XN_UNIFORM
// The input RMSNorm's weight (matvec_common.wgsl, XN_UNIFORM).
@group(0) @binding(6) var<uniform> xn: array<vec4<f32>, {{XS_LEN}}>;
#endif

fn store(t: u32, r: u32, value: f32) {
    if (t < p.n_tokens) {
        let o = t * p.y_stride + p.row_offset + r;
        var v = value;
        if (p.softcap > 0.0) {
            v = p.softcap * tanh_accurate(v / p.softcap);
        }
        if (p.accumulate != 0u) {
            v += y[o];
        }
        y[o] = v;
    }
}

@compute @workgroup_size({{WORKGROUP}})
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
#if X_BROADCAST
    @builtin(subgroup_invocation_id) subgroup_id: u32,
#endif
) {
#if X_BROADCAST
    subgroup_lane = subgroup_id & 7u;
#endif
    let lane = lid % G;
#if ROWS4
    // Decode, RPT = 4: each group of G lanes takes four consecutive rows together (rowdot.wgsl),
    // sums across its lanes, and lane 0 stores them.
    prepare_input(lid, 0u);
    let r4 = ((wid.x + wid.y * nwg.x) * (WG / G) + lid / G) * 4u;
    // (Decode has no TILE16: Acc is (a, b), the four rows in a.)
    let sums = reduce_rows(lid, Acc(row_dot4_0(p.first_row + r4, p.row_bytes, lane, 0u), vec4<f32>(0.0))).a;
    for (var j = 0u; j < 4u; j++) {
        if (lane == 0u && r4 + j < p.rows) {
            store(0u, r4 + j, sums[j] * scale_of(0u));
        }
    }
#else
    for (var t0 = 0u; t0 < p.n_tokens; t0 += TT) {
        prepare_input(lid, t0);
        let passes = row_passes(p.rows, nwg);
        for (var rp = 0u; rp < passes; rp++) {
            let r = ((wid.x + wid.y * nwg.x) * passes + rp) * (WG / G) + lid / G;
            let valid = r < p.rows;
            var acc = acc_zero();
            if (valid || ALL_LANES) {
                acc = row_dot_0(p.first_row + r, p.row_bytes, lane, t0);
            }
            acc = reduce_rows(lid, acc);
            if (valid && lane == 0u) {
                for (var i = 0u; i < TT; i++) {
                    store(t0 + i, r, acc_at(acc, i) * scale_of(i));
                }
            }
        }
#if NORM
        workgroupBarrier(); // norm_scale (and xs) are rewritten for the next tile
#elif STAGE_X
        workgroupBarrier();
#endif
    }
#endif
}
