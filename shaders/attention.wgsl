// Causal grouped-query attention over the KV cache, for n_tokens queries at positions pos0 + t.
//
// q:   [n_tokens, n_heads, head_dim]          out: [n_tokens, n_heads, head_dim]
// k,v: the cache, [ctx, n_kv_heads, head_dim]; positions 0 ..= pos0 + t are valid for token t.
// Query head h reads KV head h / (n_heads / n_kv_heads). One workgroup per (token, head), an
// online softmax over tiles of 64 positions. Optional logit soft-cap (softcap > 0:
// s = softcap * tanh(s / softcap)) and sliding window (window > 0: only the last `window`
// positions are visible).

struct Params {
    n_tokens: u32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    pos0: u32,
    window: u32,
    scale: f32,
    softcap: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> kc: array<f32>;
@group(0) @binding(3) var<storage, read> vc: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const TILE: u32 = 64u;
const MAX_DIMS_PER_THREAD: u32 = 4u; // head_dim <= 256

var<workgroup> qs: array<f32, 256>;
var<workgroup> scores: array<f32, 64>;

@compute @workgroup_size(64)
fn attend(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let id = wid.x + wid.y * nwg.x;
    if (id >= p.n_tokens * p.n_heads) {
        return;
    }
    let t = id / p.n_heads;
    let h = id % p.n_heads;
    let d = p.head_dim;
    let kvh = h / (p.n_heads / p.n_kv_heads);
    let kv_stride = p.n_kv_heads * d;
    let q_base = id * d;
    for (var i = lid; i < d; i += TILE) {
        qs[i] = q[q_base + i];
    }
    workgroupBarrier();

    let kv_len = p.pos0 + t + 1u;
    var start = 0u;
    if (p.window > 0u && kv_len > p.window) {
        start = kv_len - p.window;
    }
    var m = -1.0e30;
    var l = 0.0;
    var acc: array<f32, MAX_DIMS_PER_THREAD>;
    for (var j0 = start; j0 < kv_len; j0 += TILE) {
        let j = j0 + lid;
        var s = -1.0e30;
        if (j < kv_len) {
            let kb = j * kv_stride + kvh * d;
            var dot = 0.0;
            for (var i = 0u; i < d; i++) {
                dot += qs[i] * kc[kb + i];
            }
            s = dot * p.scale;
            if (p.softcap > 0.0) {
                s = p.softcap * tanh_accurate(s / p.softcap);
            }
        }
        scores[lid] = s;
        workgroupBarrier();
        let n = min(TILE, kv_len - j0);
        var tile_max = -1.0e30;
        for (var i = 0u; i < n; i++) {
            tile_max = max(tile_max, scores[i]);
        }
        let m_new = max(m, tile_max);
        let alpha = exp(m - m_new);
        l *= alpha;
        for (var c = 0u; c < MAX_DIMS_PER_THREAD; c++) {
            acc[c] *= alpha;
        }
        for (var i = 0u; i < n; i++) {
            let pi = exp(scores[i] - m_new);
            l += pi;
            let vb = (j0 + i) * kv_stride + kvh * d;
            for (var c = 0u; c < MAX_DIMS_PER_THREAD; c++) {
                let dd = lid + c * TILE;
                if (dd < d) {
                    acc[c] += pi * vc[vb + dd];
                }
            }
        }
        m = m_new;
        workgroupBarrier();
    }
    for (var c = 0u; c < MAX_DIMS_PER_THREAD; c++) {
        let dd = lid + c * TILE;
        if (dd < d) {
            out[q_base + dd] = acc[c] / l;
        }
    }
}
