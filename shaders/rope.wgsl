// Rotary position embedding, in place on x: [n_tokens, n_heads, head_dim]; token t has position
// pos0 + t. The first n_rot dims of each head are rotated in pairs: NORM mode pairs (2i, 2i+1)
// (interleaved, Llama), NEOX mode pairs (i, i + n_rot/2) (half split, Qwen/Phi/Gemma); the dims
// past n_rot pass through. theta_i = pos * freq_base^(-2i / n_rot) / divisors[i], where the
// divisor table [n_rot / 2] holds every frequency scaling (linear, YaRN, LongRoPE, Llama 3
// factors; see src/model/rope.rs); cos and sin are multiplied by mscale.

struct Params {
    n_tokens: u32,
    n_heads: u32,
    head_dim: u32,
    n_rot: u32,
    pos0: u32,
    neox: u32,
    freq_base: f32,
    mscale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> divisors: array<f32>;

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
    let theta = pos * pow(p.freq_base, -2.0 * f32(i) / f32(p.n_rot)) / divisors[i];
    let c = cos(theta) * p.mscale;
    let s = sin(theta) * p.mscale;
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
