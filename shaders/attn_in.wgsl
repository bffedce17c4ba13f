// The attention input, fused: RMSNorm → Q, K, V projections → biases → per-head Q/K RMSNorm →
// RoPE → queries out, keys and values into this layer's KV cache (kv.wgsl).
//
// One workgroup per (head unit, token tile of TT tokens). A dispatch covers tokens t_base + t for
// t < n_tokens (all of them, or one tile when the input is bound per tile as a uniform): x row t,
// position pos0 + t_base + t, q_out row t_base + t. Unit u < n_heads is query head u, then
// come n_kv_heads key heads and n_kv_heads value heads. The unit's head_dim projected values
//   v[t, i] = s_t · Σ_k W[first + unit_head * head_dim + i, k] · n[k] · x[t, k]
// (W = wq_0 / wq_1 / wq_2 from row q_first / k_first / v_first: separate matrices, or one fused
// matrix bound three times; s_t, n: the input RMSNorm as in matvec.wgsl) are staged in workgroup
// memory, then: + bias (vecs[q_bias ..], ... unless NONE); RMSNorm over the head with weight
// vecs[q_norm ..] / vecs[k_norm ..] (unless NONE); RoPE for queries and keys at position
// pos0 + t: the first n_rot dims rotate in pairs (2i, 2i+1), or (i, i + n_rot/2) when neox, by
// theta_i = pos · freq_scale · freq_base^(-2i / n_rot) / factor_i (factor_i = vecs[rope_factors + i],
// or 1 when NONE), cos and sin scaled by mscale; the other dims pass through.
//   q_out: [n_tokens, n_heads, head_dim] f32          kv: this layer's cache (keys, values)

struct Params {
    k: u32,
    n_tokens: u32,
    x_offset: u32,
    x_stride: u32,
    norm: u32,
    eps: f32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    q_first: u32,
    k_first: u32,
    v_first: u32,
    q_row_bytes: u32,
    k_row_bytes: u32,
    v_row_bytes: u32,
    ctx_len: u32,
    q_bias: u32,
    k_bias: u32,
    v_bias: u32,
    q_norm: u32,
    k_norm: u32,
    head_eps: f32,
    n_rot: u32,
    neox: u32,
    freq_base: f32,
    freq_scale: f32,
    rope_factors: u32,
    mscale: f32,
    t_base: u32,
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
#if TX1
@group(0) @binding(5) var wq_1: texture_storage_2d<rgba32uint, read>;
#elif V41
@group(0) @binding(5) var<storage, read> wq_1: array<vec4<u32>>;
#else
@group(0) @binding(5) var<storage, read> wq_1: array<u32>;
#endif
#if TX2
@group(0) @binding(6) var wq_2: texture_storage_2d<rgba32uint, read>;
#elif V42
@group(0) @binding(6) var<storage, read> wq_2: array<vec4<u32>>;
#else
@group(0) @binding(6) var<storage, read> wq_2: array<u32>;
#endif
@group(0) @binding(7) var<storage, read_write> q_out: array<f32>;
#if KV_TEXTURE
@group(0) @binding(8) var kv_out: texture_storage_2d<rgba32uint, write>;
#else
@group(0) @binding(8) var<storage, read_write> kv: array<u32>;
#endif
#if XN_UNIFORM
// The input RMSNorm's weight (matvec_common.wgsl, XN_UNIFORM).
@group(0) @binding(9) var<uniform> xn: array<vec4<f32>, {{XS_LEN}}>;
#endif

// The projected values of the unit's head for the TT tokens: vals[i * head_dim + d].
var<workgroup> vals: array<f32, 2048>;
// 1 / rms of each token's head values (norm_heads).
var<workgroup> head_scale: array<f32, 16>;

// RMSNorm of the head values of each of the tile's ntt tokens over the head, weight vecs[w ..]:
// up to 32 threads per token sum its squares (partial sums in red_s), one turns them into the
// token's scale. Every thread calls it (WG ≥ TT, see `matmul::attn_in`).
fn norm_heads(lid: u32, ntt: u32, hd: u32, w: u32) {
    let lanes = min(WG / TT, 32u);
    let i = lid / lanes;
    var s = 0.0;
    if (i < ntt) {
        for (var d = lid % lanes; d < hd; d += lanes) {
            s += vals[i * hd + d] * vals[i * hd + d];
        }
    }
    red_s[lid] = s;
    workgroupBarrier();
    if (lid < ntt) {
        var total = 0.0;
        for (var j = 0u; j < lanes; j++) {
            total += red_s[lid * lanes + j];
        }
        head_scale[lid] = inverseSqrt(total / f32(hd) + p.head_eps);
    }
    workgroupBarrier();
    for (var e = lid; e < ntt * hd; e += WG) {
        vals[e] *= head_scale[e / hd] * vec_at(w + e % hd);
    }
    workgroupBarrier();
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
    let units = p.n_heads + 2u * p.n_kv_heads;
    let id = wid.x + wid.y * nwg.x;
    if (id >= units * ((p.n_tokens + TT - 1u) / TT)) {
        return;
    }
    let unit = id % units;
    let t0 = (id / units) * TT;
    // kind 0: query, 1: key, 2: value; head: the head within its kind.
    var kind = 0u;
    var head = unit;
    if (unit >= p.n_heads + p.n_kv_heads) {
        kind = 2u;
        head = unit - p.n_heads - p.n_kv_heads;
    } else if (unit >= p.n_heads) {
        kind = 1u;
        head = unit - p.n_heads;
    }
    let hd = p.head_dim;
    let lane = lid % G;

    prepare_input(lid, t0);
#if ROWS4
    // Decode: each group of G lanes takes four consecutive rows of the head together
    // (rowdot.wgsl) and sums across its lanes (G = 1 on CPU drivers). Every thread makes the same
    // passes (the lanes' sums may need the whole workgroup).
    for (var r0 = 0u; r0 < hd; r0 += 4u * (WG / G)) {
        let r = r0 + 4u * (lid / G);
        var acc = acc_zero();
        if (r < hd || ALL_LANES) {
            if (kind == 0u) {
                acc.a = row_dot4_0(p.q_first + head * hd + r, p.q_row_bytes, lane, 0u);
            } else if (kind == 1u) {
                acc.a = row_dot4_1(p.k_first + head * hd + r, p.k_row_bytes, lane, 0u);
            } else {
                acc.a = row_dot4_2(p.v_first + head * hd + r, p.v_row_bytes, lane, 0u);
            }
        }
        let sums = reduce_rows(lid, acc).a;
        for (var j = 0u; j < 4u; j++) {
            if (lane == 0u && r + j < hd) {
                vals[r + j] = sums[j] * scale_of(0u);
            }
        }
    }
#else
    for (var r0 = 0u; r0 < hd; r0 += WG / G) {
        let r = r0 + lid / G;
        let valid = r < hd;
        var acc = acc_zero();
        if (valid || ALL_LANES) {
            if (kind == 0u) {
                acc = row_dot_0(p.q_first + head * hd + r, p.q_row_bytes, lane, t0);
            } else if (kind == 1u) {
                acc = row_dot_1(p.k_first + head * hd + r, p.k_row_bytes, lane, t0);
            } else {
                acc = row_dot_2(p.v_first + head * hd + r, p.v_row_bytes, lane, t0);
            }
        }
        acc = reduce_rows(lid, acc);
        if (valid && lane == 0u) {
            for (var i = 0u; i < TT; i++) {
                vals[i * hd + r] = acc_at(acc, i) * scale_of(i);
            }
        }
    }
#endif
    workgroupBarrier();

    // Then the tile's tokens t0 + i (i < ntt) in phases over all of them at once, so that a tile
    // costs a few barriers rather than a few per token (on CPU drivers a barrier switches between
    // the workgroup's subgroups: per-token barriers took more than the tile's projections).
    let ntt = min(TT, p.n_tokens - t0);
    let n = ntt * hd;
    var bias = p.q_bias;
    var head_norm = p.q_norm;
    if (kind == 1u) {
        bias = p.k_bias;
        head_norm = p.k_norm;
    } else if (kind == 2u) {
        bias = p.v_bias;
        head_norm = NONE;
    }
    if (bias != NONE) {
        for (var e = lid; e < n; e += WG) {
            vals[e] += vec_at(bias + head * hd + e % hd);
        }
        workgroupBarrier();
    }
    if (head_norm != NONE) {
        norm_heads(lid, ntt, hd, head_norm);
    }
    let pos0 = state.pos0 + p.t_base + t0;
    if (kind < 2u) {
        let half_rot = p.n_rot / 2u;
        for (var e = lid; e < ntt * half_rot; e += WG) {
            let i = e / half_rot;
            let j = e % half_rot;
            var theta = f32(pos0 + i) * p.freq_scale * pow(p.freq_base, -2.0 * f32(j) / f32(p.n_rot));
            if (p.rope_factors != NONE) {
                theta /= vec_at(p.rope_factors + j);
            }
            let c = cos(theta) * p.mscale;
            let sn = sin(theta) * p.mscale;
            var ia = i * hd + 2u * j;
            var ib = ia + 1u;
            if (p.neox != 0u) {
                ia = i * hd + j;
                ib = ia + half_rot;
            }
            let a = vals[ia];
            let b = vals[ib];
            vals[ia] = a * c - b * sn;
            vals[ib] = a * sn + b * c;
        }
        workgroupBarrier();
    }
    if (kind == 0u) {
        for (var e = lid; e < n; e += WG) {
            q_out[((p.t_base + t0 + e / hd) * p.n_heads + head) * hd + e % hd] = vals[e];
        }
        return;
    }
#if KV_TEXTURE
    // Eight elements to a texel (head_dim is a multiple of 8).
    for (var e8 = lid; e8 < n / 8u; e8 += WG) {
        let e = 8u * e8;
        let e0 = kv_elem(kind - 1u, pos0 + e / hd, head * hd + e % hd);
        let texel = vec4<u32>(pack2x16float(vec2<f32>(vals[e], vals[e + 1u])), pack2x16float(vec2<f32>(vals[e + 2u], vals[e + 3u])),
            pack2x16float(vec2<f32>(vals[e + 4u], vals[e + 5u])), pack2x16float(vec2<f32>(vals[e + 6u], vals[e + 7u])));
        textureStore(kv_out, kv_coord(e0 >> 3u), texel);
    }
#else
    for (var e2 = lid; e2 < n / 2u; e2 += WG) {
        let e = 2u * e2;
        let e0 = kv_elem(kind - 1u, pos0 + e / hd, head * hd + e % hd);
        let v = vec2<f32>(vals[e], vals[e + 1u]);
#if KV_F16
        kv[e0 >> 1u] = pack2x16float(v);
#else
        kv[e0] = bitcast<u32>(v.x);
        kv[e0 + 1u] = bitcast<u32>(v.y);
#endif
    }
#endif
}

