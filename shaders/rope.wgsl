// Rotary position embedding, in place on x: [n_tokens, n_heads, head_dim]; token t has position
// pos0 + t. The first n_rot dims of each head are rotated in pairs: NORM mode pairs (2i, 2i+1)
// (interleaved, Llama), NEOX mode pairs (i, i + n_rot/2) (half split, Qwen/Phi/Gemma).
// theta_i = pos * freq_scale * freq_base^(-2i / n_rot) / factor_i, where factor_i comes from
// `factors` [n_rot / 2] when has_factors (Llama 3 "rope_freqs") and is 1 otherwise.

struct Params {
    n_tokens: u32,
    n_heads: u32,
    head_dim: u32,
    n_rot: u32,
    pos0: u32,
    neox: u32,
    freq_base: f32,
    freq_scale: f32,
    has_factors: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> factors: array<f32>;

@compute @workgroup_size(64)
fn rope(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = (wid.x + wid.y * nwg.x) * 64u + lid;
    let half_rot = p.n_rot / 2u;
    let total = p.n_tokens * p.n_heads * half_rot;
    if (idx >= total) {
        return;
    }
    let i = idx % half_rot;
    let row = idx / half_rot; // t * n_heads + h
    let t = row / p.n_heads;
    let base = row * p.head_dim;
    let pos = f32(p.pos0 + t);
    var theta = pos * p.freq_scale * pow(p.freq_base, -2.0 * f32(i) / f32(p.n_rot));
    if (p.has_factors != 0u) {
        theta /= factors[i];
    }
    let c = cos(theta);
    let s = sin(theta);
    var ia = base + 2u * i;
    var ib = ia + 1u;
    if (p.neox != 0u) {
        ia = base + i;
        ib = ia + half_rot;
    }
    let a = x[ia];
    let b = x[ib];
    x[ia] = a * c - b * s;
    x[ib] = a * s + b * c;
}
