// Causal grouped-query attention over the KV cache, part 1 of 2 (split-K, "flash-decoding").
//
// Workgroup (b, h, s): query tokens t = b * q_block .. + q_block (position pos0 + t; prefill takes
// blocks of queries so that one workgroup's set-up serves many), query head h (reading KV head
// h / (n_heads / n_kv_heads)), and the s-th of `splits` equal slices of the visible positions
// [start, pos0 + t] (start > 0 only with a sliding window: the last `window` positions). For each
// of its queries, over its slice it keeps an online softmax of score_j = scale · q·k_j (soft-capped: c · tanh(score / c)
// when softcap > 0) and writes the slice's max m, sum l = Σ_j e^(score_j - m) and
// o = Σ_j e^(score_j - m) v_j to
//   part[((t * n_heads + h) * splits + s) * (head_dim + 2) ..] = (m, l, o[0 .. head_dim])
// An empty slice writes (-1e30, 0, 0...). attention_combine.wgsl adds the slices up.
//   q: [n_tokens, n_heads, head_dim] f32     kv: the layer's cache (kv.wgsl)
// With the cache in a texture (KV_TEXTURE) this file holds `attend_lanes` instead, which combines
// its slices itself (see there).

struct Params {
    n_tokens: u32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    ctx_len: u32,
    splits: u32,
    window: u32,
    q_block: u32,
    scale: f32,
    softcap: f32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> q: array<f32>;
#if KV_TEXTURE
@group(0) @binding(3) var kv_tex: texture_storage_2d<rgba32uint, read>;
#else
@group(0) @binding(3) var<storage, read> kv: array<u32>;
#endif
// The slices' partial results; with SINGLE_SLICE (attend_rows, splits = 1) the attention output
// itself, [n_tokens, n_heads, head_dim] f32, and no combine follows.
@group(0) @binding(4) var<storage, read_write> part: array<f32>;

// The positions [lo, hi) of slice s of query token t: the s-th of `splits` equal parts of the
// visible positions [start, pos0 + t] (start > 0 only with a sliding window).
fn slice_range(t: u32, s: u32) -> vec2<u32> {
    let kv_len = state.pos0 + t + 1u;
    var start = 0u;
    if (p.window > 0u && kv_len > p.window) {
        start = kv_len - p.window;
    }
    let per_split = (kv_len - start + p.splits - 1u) / p.splits;
    let lo = min(start + s * per_split, kv_len);
    return vec2<u32>(lo, min(lo + per_split, kv_len));
}

// Query elements e .. e + 4.
fn q_read4(e: u32) -> vec4<f32> {
    return vec4<f32>(q[e], q[e + 1u], q[e + 2u], q[e + 3u]);
}

// part[e .. e + 4] = v.
fn part_store4(e: u32, v: vec4<f32>) {
    part[e] = v.x;
    part[e + 1u] = v.y;
    part[e + 2u] = v.z;
    part[e + 3u] = v.w;
}

// A score soft-capped (c · tanh(score / c)) when the model caps its attention logits (c > 0).
fn soft_cap(score: f32) -> f32 {
    if (p.softcap > 0.0) {
        return p.softcap * tanh_accurate(score / p.softcap);
    }
    return score;
}

#if KV_TEXTURE
// The cache in a texture (CPU drivers; gpu::kv), head_dim = 8 · HEAD_TEXELS: one workgroup of
// LANES threads per (token t, head h), thread L going through slice L of the LANES equal slices of
// the visible positions (p.splits = LANES) with an online softmax. The head's query and the
// thread's running output stay in registers: the loops over the head's texels are unrolled when
// the kernel is built (`#for`), because CPU drivers keep private arrays in memory, and a texel
// fetch brings eight cached values at once. The slices are then combined in workgroup memory
// (one barrier: a workgroup is one SIMD batch on a CPU driver), and the output written: no
// partial results, no combine dispatch.
//   q, part (the output here): [n_tokens, n_heads, head_dim] f32
const LANES: u32 = 8u;
const HEAD_VEC4S: u32 = 2u * {{HEAD_TEXELS}}u;
var<workgroup> slice_m: array<f32, LANES>;
var<workgroup> slice_l: array<f32, LANES>;
var<workgroup> slice_o: array<vec4<f32>, {{LANE_VEC4S}}>;

fn kv_texel(t: u32) -> vec4<u32> {
    return textureLoad(kv_tex, kv_coord(t));
}
// The texel's elements 0 .. 4 and 4 .. 8.
fn texel_lo(w: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}
fn texel_hi(w: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w));
}

@compute @workgroup_size(8)
fn attend_lanes(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let th = wid.x + wid.y * nwg.x;
    if (th >= p.n_tokens * p.n_heads) {
        return;
    }
    let t = th / p.n_heads;
    let h = th % p.n_heads;
    let kv_base = (h / (p.n_heads / p.n_kv_heads)) * p.head_dim;
    let q_base = th * p.head_dim;
    // Query elements 8i .. 8i + 4 in qlo_i, 8i + 4 .. 8i + 8 in qhi_i; the output likewise.
#for i < HEAD_TEXELS
    let qlo{{i}} = q_read4(q_base + {{i}}u * 8u);
    let qhi{{i}} = q_read4(q_base + {{i}}u * 8u + 4u);
    var olo{{i}} = vec4<f32>(0.0);
    var ohi{{i}} = vec4<f32>(0.0);
#endfor
    let range = slice_range(t, lid);
    var m = -1.0e30;
    var l = 0.0;
    for (var j = range.x; j < range.y; j++) {
        let kt = kv_elem(0u, j, kv_base) >> 3u;
        var qk = vec4<f32>(0.0);
#for i < HEAD_TEXELS
        let k{{i}} = kv_texel(kt + {{i}}u);
        qk += qlo{{i}} * texel_lo(k{{i}}) + qhi{{i}} * texel_hi(k{{i}});
#endfor
        let score = soft_cap(dot(qk, vec4<f32>(1.0)) * p.scale);
        let m_new = max(m, score);
        let alpha = exp(m - m_new);
        let weight = exp(score - m_new);
        l = l * alpha + weight;
        m = m_new;
        let vt = kv_elem(1u, j, kv_base) >> 3u;
#for i < HEAD_TEXELS
        let v{{i}} = kv_texel(vt + {{i}}u);
        olo{{i}} = olo{{i}} * alpha + weight * texel_lo(v{{i}});
        ohi{{i}} = ohi{{i}} * alpha + weight * texel_hi(v{{i}});
#endfor
    }
    // Combine the slices: out = Σ_s e^(m_s - M) o_s / Σ_s e^(m_s - M) l_s (an empty slice has
    // m_s = -1e30, l_s = 0, o_s = 0; some slice holds a position).
    slice_m[lid] = m;
    slice_l[lid] = l;
    let o = lid * HEAD_VEC4S;
#for i < HEAD_TEXELS
    slice_o[o + {{i}}u * 2u] = olo{{i}};
    slice_o[o + {{i}}u * 2u + 1u] = ohi{{i}};
#endfor
    workgroupBarrier();
    var m_all = -1.0e30;
    for (var s = 0u; s < LANES; s++) {
        m_all = max(m_all, slice_m[s]);
    }
    var l_all = 0.0;
    for (var s = 0u; s < LANES; s++) {
        l_all += exp(slice_m[s] - m_all) * slice_l[s];
    }
    for (var c = lid; c < HEAD_VEC4S; c += LANES) {
        var acc = vec4<f32>(0.0);
        for (var s = 0u; s < LANES; s++) {
            acc += exp(slice_m[s] - m_all) * slice_o[s * HEAD_VEC4S + c];
        }
        let v = acc / l_all;
        part_store4(q_base + 4u * c, v);
    }
}

#if QUERY_LANES
// Prefill on CPU drivers with subgroups of at least LANES (gpu::ops::attend_queries): one
// workgroup of LANES threads per (block of LANES consecutive query tokens, head h), thread L
// taking token t0 + L through every position any of the block's tokens sees, in order, with an
// online softmax (positions its own token does not see weigh nothing; threads past the last token
// run along for the broadcasts and write nothing). Each position's key and value are fetched once
// for the block — thread L fetches texels L, L + LANES, ... (LANE_TEXELS of them) and
// subgroupBroadcast hands them round — where attend_lanes, whose threads take different
// positions, has each fetch all of a position's texels (lavapipe gathers a fetch lane by lane).
//   q, part (the output here): [n_tokens, n_heads, head_dim] f32
@compute @workgroup_size(8)
fn attend_queries(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let bh = wid.x + wid.y * nwg.x;
    if (bh >= (p.n_tokens + LANES - 1u) / LANES * p.n_heads) {
        return;
    }
    let h = bh % p.n_heads;
    let t0 = bh / p.n_heads * LANES;
    let last = min(t0 + LANES, p.n_tokens) - 1u;
    let live = t0 + lid <= last;
    let t = min(t0 + lid, last);
    let kv_base = (h / (p.n_heads / p.n_kv_heads)) * p.head_dim;
    let q_base = (t * p.n_heads + h) * p.head_dim;
#for i < HEAD_TEXELS
    let qlo{{i}} = q_read4(q_base + {{i}}u * 8u);
    let qhi{{i}} = q_read4(q_base + {{i}}u * 8u + 4u);
    var olo{{i}} = vec4<f32>(0.0);
    var ohi{{i}} = vec4<f32>(0.0);
#endfor
    // p.splits = 1: slice 0 is all a token sees. Windows start later for later tokens.
    let mine = slice_range(t, 0u);
    let first = slice_range(t0, 0u).x;
    let end = slice_range(last, 0u).y;
    var m = -1.0e30;
    var l = 0.0;
    for (var j = first; j < end; j++) {
        let visible = live && j >= mine.x && j < mine.y;
        let kt = kv_elem(0u, j, kv_base) >> 3u;
#for i < LANE_TEXELS
        let kr{{i}} = kv_texel(kt + min(lid + {{i}}u * LANES, {{HEAD_TEXELS}}u - 1u));
        let klo{{i}} = texel_lo(kr{{i}});
        let khi{{i}} = texel_hi(kr{{i}});
#endfor
        var qk = vec4<f32>(0.0);
#for i < HEAD_TEXELS
        qk += qlo{{i}} * subgroupBroadcast(klo{{i/8}}, {{i%8}}u) + qhi{{i}} * subgroupBroadcast(khi{{i/8}}, {{i%8}}u);
#endfor
        let score = soft_cap(dot(qk, vec4<f32>(1.0)) * p.scale);
        let m_new = select(m, max(m, score), visible);
        let alpha = exp(m - m_new);
        let weight = select(0.0, exp(score - m_new), visible);
        l = l * alpha + weight;
        m = m_new;
        let vt = kv_elem(1u, j, kv_base) >> 3u;
#for i < LANE_TEXELS
        let vr{{i}} = kv_texel(vt + min(lid + {{i}}u * LANES, {{HEAD_TEXELS}}u - 1u));
        let vlo{{i}} = texel_lo(vr{{i}});
        let vhi{{i}} = texel_hi(vr{{i}});
#endfor
#for i < HEAD_TEXELS
        olo{{i}} = olo{{i}} * alpha + weight * subgroupBroadcast(vlo{{i/8}}, {{i%8}}u);
        ohi{{i}} = ohi{{i}} * alpha + weight * subgroupBroadcast(vhi{{i/8}}, {{i%8}}u);
#endfor
    }
    if (live) {
#for i < HEAD_TEXELS
        part_store4(q_base + {{i}}u * 8u, olo{{i}} / l);
        part_store4(q_base + {{i}}u * 8u + 4u, ohi{{i}} / l);
#endfor
    }
}
#endif
#else
const TILE: u32 = 64u;
const MAX_DIMS_PER_THREAD: u32 = 4u; // head_dim <= 256

// Two buffers of a key tile's scores, used in turn: the tile after next overwrites a buffer only
// after a barrier that every thread reaches once done reading it, so one barrier per tile
// suffices (barriers are what costs most on CPU drivers).
var<workgroup> scores: array<f32, 128>;

@compute @workgroup_size(64)
fn attend(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let id = wid.x + wid.y * nwg.x;
    let blocks = (p.n_tokens + p.q_block - 1u) / p.q_block;
    if (id >= blocks * p.n_heads * p.splits) {
        return;
    }
    let s = id % p.splits;
    let h = (id / p.splits) % p.n_heads;
    let block = id / (p.splits * p.n_heads);
    var tiles_done = 0u;
    for (var t = block * p.q_block; t < min(block * p.q_block + p.q_block, p.n_tokens); t++) {
        tiles_done = attend_one(t, h, s, lid, tiles_done);
    }
}

// The slice s of query token t and head h (see the header). `tiles_done`: key tiles the
// workgroup went through before (which score buffer is next); returns the count after this query.
fn attend_one(t: u32, h: u32, s: u32, lid: u32, tiles_done: u32) -> u32 {
    let th = t * p.n_heads + h;
    let d = p.head_dim;
    let kvh = h / (p.n_heads / p.n_kv_heads);
    let qb = th * d;
    var tile_index = tiles_done;

    let range = slice_range(t, s);
    let lo = range.x;
    let hi = range.y;
    var m = -1.0e30;
    var l = 0.0;
    var acc: array<f32, MAX_DIMS_PER_THREAD>;
    for (var j0 = lo; j0 < hi; j0 += TILE) {
        let j = j0 + lid;
        var score = -1.0e30;
        if (j < hi) {
            let kb = kv_elem(0u, j, kvh * d);
            var dot = 0.0;
            for (var i = 0u; i < d; i += 2u) {
                let k2 = kv_read2(kb + i);
                dot += q[qb + i] * k2.x + q[qb + i + 1u] * k2.y;
            }
            score = soft_cap(dot * p.scale);
        }
        let buf = (tile_index & 1u) * TILE;
        tile_index++;
        scores[buf + lid] = score;
        workgroupBarrier();
        let n = min(TILE, hi - j0);
        var tile_max = -1.0e30;
        for (var i = 0u; i < n; i++) {
            tile_max = max(tile_max, scores[buf + i]);
        }
        let m_new = max(m, tile_max);
        let alpha = exp(m - m_new);
        l *= alpha;
        for (var c = 0u; c < MAX_DIMS_PER_THREAD; c++) {
            acc[c] *= alpha;
        }
        for (var i = 0u; i < n; i++) {
            let pi = exp(scores[buf + i] - m_new);
            l += pi;
            let vb = kv_elem(1u, j0 + i, kvh * d);
            for (var c = 0u; c < MAX_DIMS_PER_THREAD; c++) {
                let dd = lid + c * TILE;
                if (dd < d) {
                    acc[c] += pi * kv_read(vb + dd);
                }
            }
        }
        m = m_new;
    }
    let o = (th * p.splits + s) * (d + 2u);
    if (lid == 0u) {
        part[o] = m;
        part[o + 1u] = l;
    }
    for (var c = 0u; c < MAX_DIMS_PER_THREAD; c++) {
        let dd = lid + c * TILE;
        if (dd < d) {
            part[o + 2u + dd] = acc[c];
        }
    }
    return tile_index;
}

// The same partial results with one thread per (token t, head h, slice s) row instead of a
// workgroup (CPU drivers, whose SIMD lanes each run a thread: no barrier, no workgroup memory;
// a workgroup's neighbouring threads are the slices and heads of one or two tokens, so their
// loops run about as long). Thread id = (t * n_heads + h) * splits + s; q_block is unused.
// head_dim is a multiple of 16 and loops take 8 or 16 dimensions and 4 keys per iteration,
// because lavapipe ends any invocation after 65535 loop iterations in all (its guard against
// endless loops); the host splits the positions so that a slice stays under that
// (ops::attend_rows_max_keys).
const ROW_WG: u32 = 16u;

// Elements e .. e + 4 of the cache (e a multiple of 4).
fn kv_read4(e: u32) -> vec4<f32> {
    return vec4<f32>(kv_read2(e), kv_read2(e + 2u));
}


@compute @workgroup_size(16)
fn attend_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let id = (wid.x + wid.y * nwg.x) * ROW_WG + lid;
    if (id >= p.n_tokens * p.n_heads * p.splits) {
        return;
    }
    let s = id % p.splits;
    let th = id / p.splits;
    let t = th / p.n_heads;
    let h = th % p.n_heads;
    let d = p.head_dim;
    let kvh = h / (p.n_heads / p.n_kv_heads);
    let qb = th * d;

    let range = slice_range(t, s);
    let lo = range.x;
    let hi = range.y;
    var m = -1.0e30;
    var l = 0.0;
    // The running output: dimensions 4i .. 4i + 4 in acc[i] (zero-initialised).
    var acc: array<vec4<f32>, 64>;
    // Keys in groups of four, so that each q load (a load per lane on CPU drivers) and each
    // update of acc serves four keys. Keys at hi or after weigh 0; their reads are clamped.
    for (var j0 = lo; j0 < hi; j0 += 4u) {
        let last = hi - 1u;
        let kb0 = kv_elem(0u, j0, kvh * d);
        let kb1 = kv_elem(0u, min(j0 + 1u, last), kvh * d);
        let kb2 = kv_elem(0u, min(j0 + 2u, last), kvh * d);
        let kb3 = kv_elem(0u, min(j0 + 3u, last), kvh * d);
        var dot0 = vec4<f32>(0.0);
        var dot1 = vec4<f32>(0.0);
        var dot2 = vec4<f32>(0.0);
        var dot3 = vec4<f32>(0.0);
        for (var i = 0u; i < d; i += 8u) {
            let qa = q_read4(qb + i);
            let qc = q_read4(qb + i + 4u);
            dot0 += qa * kv_read4(kb0 + i) + qc * kv_read4(kb0 + i + 4u);
            dot1 += qa * kv_read4(kb1 + i) + qc * kv_read4(kb1 + i + 4u);
            dot2 += qa * kv_read4(kb2 + i) + qc * kv_read4(kb2 + i + 4u);
            dot3 += qa * kv_read4(kb3 + i) + qc * kv_read4(kb3 + i + 4u);
        }
        let one = vec4<f32>(1.0);
        let raw = vec4<f32>(dot(dot0, one), dot(dot1, one), dot(dot2, one), dot(dot3, one)) * p.scale;
        var score = vec4<f32>(soft_cap(raw.x), soft_cap(raw.y), soft_cap(raw.z), soft_cap(raw.w));
        score = select(vec4<f32>(-1.0e30), score, vec4<u32>(j0, j0 + 1u, j0 + 2u, j0 + 3u) < vec4<u32>(hi));
        // Online softmax: what came before is rescaled only when the maximum grows.
        let group_max = max(max(score.x, score.y), max(score.z, score.w));
        if (group_max > m) {
            let alpha = exp(m - group_max);
            l *= alpha;
            for (var i = 0u; i < d / 4u; i += 4u) {
                acc[i] *= alpha;
                acc[i + 1u] *= alpha;
                acc[i + 2u] *= alpha;
                acc[i + 3u] *= alpha;
            }
            m = group_max;
        }
        let pj = exp(score - vec4<f32>(m));
        l += dot(pj, one);
        let vb0 = kv_elem(1u, j0, kvh * d);
        let vb1 = kv_elem(1u, min(j0 + 1u, last), kvh * d);
        let vb2 = kv_elem(1u, min(j0 + 2u, last), kvh * d);
        let vb3 = kv_elem(1u, min(j0 + 3u, last), kvh * d);
        for (var i = 0u; i < d; i += 8u) {
            let a = i / 4u;
            acc[a] += pj.x * kv_read4(vb0 + i) + pj.y * kv_read4(vb1 + i) + pj.z * kv_read4(vb2 + i) + pj.w * kv_read4(vb3 + i);
            acc[a + 1u] += pj.x * kv_read4(vb0 + i + 4u) + pj.y * kv_read4(vb1 + i + 4u) + pj.z * kv_read4(vb2 + i + 4u) + pj.w * kv_read4(vb3 + i + 4u);
        }
    }
#if SINGLE_SLICE
    // The whole row in one slice (never empty): its output directly (part is the output).
    for (var i = 0u; i < d / 4u; i++) {
        part_store4(qb + 4u * i, acc[i] / l);
    }
#else
    let o = (th * p.splits + s) * (d + 2u);
    part[o] = m;
    part[o + 1u] = l;
    for (var i = 0u; i < d / 4u; i++) {
        part_store4(o + 2u + 4u * i, acc[i]);
    }
#endif
}
#endif
