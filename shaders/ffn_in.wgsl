// The gated feed-forward input: for r < rows (the hidden width F)
//   y[t, r] = act(s_t · Σ_k Wg[gate_first + r, k] n[k] x[t, k]) · (s_t · Σ_k Wu[up_first + r, k] n[k] x[t, k])
// act = silu (SWIGLU) or gelu_tanh (GEGLU); s_t and n fold in the RMSNorm of the input as in
// matvec.wgsl. wq_0 holds the gate rows, wq_1 the up rows (the same buffer twice for a fused
// [2F, D] gate/up matrix, with up_first = F).      x: [n_tokens, k]    y: [n_tokens, rows]
// A workgroup handles passes · WG / G rows (`row_passes` in matvec_common.wgsl).

struct Params {
    k: u32,
    n_tokens: u32,
    x_offset: u32,
    x_stride: u32,
    norm: u32,
    eps: f32,
    rows: u32,
    gate_first: u32,
    up_first: u32,
    gate_row_bytes: u32,
    up_row_bytes: u32,
    y_offset: u32,
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
#if TX1
@group(0) @binding(5) var wq_1: texture_storage_2d<rgba32uint, read>;
#elif V41
@group(0) @binding(5) var<storage, read> wq_1: array<vec4<u32>>;
#else
@group(0) @binding(5) var<storage, read> wq_1: array<u32>;
#endif
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
#if XN_UNIFORM
// The input RMSNorm's weight (matvec_common.wgsl, XN_UNIFORM).
@group(0) @binding(7) var<uniform> xn: array<vec4<f32>, {{XS_LEN}}>;
#endif

fn activation(g: f32) -> f32 {
#if GEGLU
    return 0.5 * g * (1.0 + tanh_accurate(0.7978845608028654 * (g + 0.044715 * g * g * g)));
#else
    return g / (1.0 + exp(-g));
#endif
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
#if GATE_UP_X32
    // Both matrices read whole blocks in the raw layout (Q4_1, Q5_0, Q8_0): each block of the input is
    // loaded once for the thread's four gate rows and four up rows.
    let xo = x_row(0u);
    let g0 = (p.gate_first + r4) * p.gate_row_bytes;
    let u0 = (p.up_first + r4) * p.up_row_bytes;
    var gate4 = vec4<f32>(0.0);
    var up4 = vec4<f32>(0.0);
    for (var b = lane; b < p.k / 32u; b += G) {
        let xs = load_x32_0(xo, b);
        gate4 += block_dot4_x_0(g0, p.gate_row_bytes, b, xs);
        up4 += block_dot4_x_1(u0, p.up_row_bytes, b, X32_1(xs.a0, xs.a1, xs.a2, xs.a3, xs.b0, xs.b1, xs.b2, xs.b3));
    }
#else
    let gate4 = row_dot4_0(p.gate_first + r4, p.gate_row_bytes, lane, 0u);
    let up4 = row_dot4_1(p.up_first + r4, p.up_row_bytes, lane, 0u);
#endif
    // One reduction for both (decode has no TILE16: Acc is (a, b)): gate rows in a, up rows in b.
    let sums = reduce_rows(lid, Acc(gate4, up4));
    for (var j = 0u; j < 4u; j++) {
        if (lane == 0u && r4 + j < p.rows) {
            let s = scale_of(0u);
            y[p.y_offset + r4 + j] = activation(sums.a[j] * s) * (sums.b[j] * s);
        }
    }
#else
    for (var t0 = 0u; t0 < p.n_tokens; t0 += TT) {
        prepare_input(lid, t0);
        let passes = row_passes(p.rows, nwg);
        for (var rp = 0u; rp < passes; rp++) {
            let r = ((wid.x + wid.y * nwg.x) * passes + rp) * (WG / G) + lid / G;
            let valid = r < p.rows;
            var gate = acc_zero();
            var up = gate;
            if (valid || ALL_LANES) {
                gate = row_dot_0(p.gate_first + r, p.gate_row_bytes, lane, t0);
                up = row_dot_1(p.up_first + r, p.up_row_bytes, lane, t0);
            }
            gate = reduce_rows(lid, gate);
            up = reduce_rows(lid, up);
            if (valid && lane == 0u) {
                for (var i = 0u; i < TT; i++) {
                    if (t0 + i < p.n_tokens) {
                        let s = scale_of(i);
                        y[p.y_offset + (t0 + i) * p.rows + r] = activation(acc_at(gate, i) * s) * (acc_at(up, i) * s);
                    }
                }
            }
        }
#if NORM
        workgroupBarrier();
#elif STAGE_X
        workgroupBarrier();
#endif
    }
#endif
}
