// Top-k selection on the GPU so a decode step reads back k (value, index) pairs, not the logits,
// and the repetition penalties that must change the logits before it.
//
// Order: a before b when a.value > b.value, or equal values and a.index < b.index; NaN comes
// after every number. chunk_topk runs k rounds, each picking the best element strictly after the
// previous pick in that order; merge_topk merges the chunks' sorted lists.
//   chunk_topk: src = f32 logits src[offset .. offset + n]; workgroup c handles elements
//               [1024c, 1024c + 1024) and writes its k best as (value bits, index) to
//               dst[2 (c k + j) ..]                                    dst: [n_chunks, k, 2] u32
//   merge_topk: src = those candidates (n = n_chunks * k pairs, n_chunks <= 1024); one workgroup
//               writes the k best to dst[offset + 2j ..]; missing entries are (lowest, 0xffffffff).
//               dst: [rows, k, 2] u32 (offset = 2 k row; the best id goes to next_id[0] for row 0)

struct Params {
    n: u32,
    k: u32,
    offset: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> src: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<u32>;
// merge_topk also writes the best token id here (the next step's embedding input).
@group(0) @binding(4) var<storage, read_write> next_id: array<u32>;

const WG: u32 = 256u;
const PER_THREAD: u32 = 4u;
const NONE: u32 = 0xffffffffu;
// -f32::MAX written exactly (Tint rejects the rounded -3.4028235e38 as out of range).
const NEG_INF: f32 = -0x1.fffffep+127f;

var<workgroup> best_v: array<f32, 256>;
var<workgroup> best_i: array<u32, 256>;

// NaN test on the bits (compilers may assume floats are never NaN).
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Is (v, i) before (bv, bi)? NaN sorts after every number, -inf included.
fn before(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    let vn = is_nan(v);
    let bn = is_nan(bv);
    if (vn != bn) {
        return bn;
    }
    if (vn) {
        return i < bi;
    }
    return v > bv || (v == bv && i < bi);
}

// Does (v, i) replace the best so far (bv, bi)? (i == NONE: no element; bi == NONE: none yet.)
fn better(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    return i != NONE && (bi == NONE || before(v, i, bv, bi));
}

// Is (v, i) strictly after the previous pick (pv, pi)? (pi == NONE before the first pick.)
fn after(v: f32, i: u32, pv: f32, pi: u32) -> bool {
    if (pi == NONE) {
        return true;
    }
    return before(pv, pi, v, i);
}

// Workgroup arg-best of (best_v, best_i); result in slot 0.
fn reduce(lid: u32) {
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            let ov = best_v[lid + stride];
            let oi = best_i[lid + stride];
            if (better(ov, oi, best_v[lid], best_i[lid])) {
                best_v[lid] = ov;
                best_i[lid] = oi;
            }
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn chunk_topk(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let c = wid.x + wid.y * nwg.x;
    let chunk_start = c * WG * PER_THREAD;
    if (chunk_start >= p.n) {
        return;
    }
    var vals: array<f32, PER_THREAD>;
    var idxs: array<u32, PER_THREAD>;
    for (var e = 0u; e < PER_THREAD; e++) {
        let i = chunk_start + lid + e * WG;
        idxs[e] = NONE;
        vals[e] = NEG_INF;
        if (i < p.n) {
            idxs[e] = i;
            vals[e] = bitcast<f32>(src[p.offset + i]);
        }
    }
    var pv = 0.0;
    var pi = NONE;
    for (var j = 0u; j < p.k; j++) {
        var bv = NEG_INF;
        var bi = NONE;
        for (var e = 0u; e < PER_THREAD; e++) {
            if (better(vals[e], idxs[e], bv, bi) && after(vals[e], idxs[e], pv, pi)) {
                bv = vals[e];
                bi = idxs[e];
            }
        }
        best_v[lid] = bv;
        best_i[lid] = bi;
        reduce(lid);
        let nv = best_v[0];
        let ni = best_i[0];
        if (lid == 0u) {
            let o = 2u * (c * p.k + j);
            dst[o] = bitcast<u32>(nv);
            dst[o + 1u] = ni;
        }
        workgroupBarrier();
        if (ni != NONE) {
            // Fewer than k elements leave the remaining rounds at NONE.
            pv = nv;
            pi = ni;
        }
    }
}

#if LANES_TOPK
// chunk_topk on CPU drivers with subgroups of at least 8 (gpu::ops::TopK): the same chunks and
// output, a workgroup of one subgroup of 8 threads, thread L holding elements L, L + 8, ... of the
// chunk. Each round every thread finds its best element after the previous pick, and three
// exchanges (subgroupShuffleXor) give all of them the chunk's best: no barrier. (With 256
// threads each round's workgroup reduction took nine barriers, each a switch between 32 batches
// of threads on a CPU driver: milliseconds a token at k = 40 over Gemma 3's 262144 logits.)
const LANES: u32 = 8u;

@compute @workgroup_size(8)
fn chunk_topk_lanes(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let c = wid.x + wid.y * nwg.x;
    let chunk_start = c * WG * PER_THREAD;
    if (chunk_start >= p.n) {
        return;
    }
    let chunk_end = min(chunk_start + WG * PER_THREAD, p.n);
    var pv = 0.0;
    var pi = NONE;
    for (var j = 0u; j < p.k; j++) {
        var bv = NEG_INF;
        var bi = NONE;
        for (var i = chunk_start + lid; i < chunk_end; i += LANES) {
            let v = bitcast<f32>(src[p.offset + i]);
            if (better(v, i, bv, bi) && after(v, i, pv, pi)) {
                bv = v;
                bi = i;
            }
        }
        for (var mask = 1u; mask < LANES; mask <<= 1u) {
            let ov = subgroupShuffleXor(bv, mask);
            let oi = subgroupShuffleXor(bi, mask);
            if (better(ov, oi, bv, bi)) {
                bv = ov;
                bi = oi;
            }
        }
        if (lid == 0u) {
            let o = 2u * (c * p.k + j);
            dst[o] = bitcast<u32>(bv);
            dst[o + 1u] = bi;
        }
        if (bi != NONE) {
            // Fewer than k elements leave the remaining rounds at NONE.
            pv = bv;
            pi = bi;
        }
    }
}
#endif

// merge_topk: the candidates are n / k lists of k pairs, one per chunk, each sorted (chunk_topk;
// a chunk with fewer than k elements ends its list with NONE). Thread t follows lists t, t + WG,
// ... (at most MERGE_LISTS) with a cursor each; each round the workgroup takes the best of the
// lists' heads, and the owner of the list it came from (chunk = index / chunk size) moves that
// cursor on: k rounds of a few reads, where picking "the best after the previous pick" among all
// n candidates read every candidate each round (on lavapipe 256 rounds over Gemma 3's 262144
// logits passed its 65535 loop iterations per invocation: the selection was silently cut short).
const MERGE_LISTS: u32 = 4u;

@compute @workgroup_size(256)
fn merge_topk(@builtin(local_invocation_index) lid: u32) {
    let lists = p.n / p.k;
    var cursor = array<u32, MERGE_LISTS>(0u, 0u, 0u, 0u);
    for (var j = 0u; j < p.k; j++) {
        var bv = NEG_INF;
        var bi = NONE;
        for (var s = 0u; s < MERGE_LISTS; s++) {
            let list = lid + s * WG;
            if (list < lists && cursor[s] < p.k) {
                let c = list * p.k + cursor[s];
                let v = bitcast<f32>(src[2u * c]);
                let i = src[2u * c + 1u];
                if (better(v, i, bv, bi)) {
                    bv = v;
                    bi = i;
                }
            }
        }
        best_v[lid] = bv;
        best_i[lid] = bi;
        reduce(lid);
        let nv = best_v[0];
        let ni = best_i[0];
        if (lid == 0u) {
            dst[p.offset + 2u * j] = bitcast<u32>(select(NEG_INF, nv, ni != NONE));
            dst[p.offset + 2u * j + 1u] = ni;
            if (j == 0u && ni != NONE && p.offset == 0u) {
                next_id[0] = ni;
            }
        }
        workgroupBarrier();
        if (ni != NONE) {
            let list = ni / (WG * PER_THREAD);
            if (list % WG == lid) {
                cursor[list / WG] += 1u;
            }
        }
    }
}

// penalize: src = state.penalty_pairs (token id, count) pairs of recent tokens (ids unique); dst =
// the f32 logits row at `offset`. Like llama.cpp: a positive logit is divided by `state.repeat`, a
// negative one multiplied, then count * state.frequency + state.presence is subtracted.
@compute @workgroup_size(256)
fn penalize(@builtin(local_invocation_index) lid: u32) {
    for (var i = lid; i < state.penalty_pairs; i += WG) {
        let id = src[2u * i];
        let count = src[2u * i + 1u];
        let o = p.offset + id;
        var logit = bitcast<f32>(dst[o]);
        logit = select(logit * state.repeat, logit / state.repeat, logit > 0.0);
        logit -= f32(count) * state.frequency + select(0.0, state.presence, count > 0u);
        dst[o] = bitcast<u32>(logit);
    }
}
