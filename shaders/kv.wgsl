// The KV cache of one layer (gpu::kv): keys then values, each [ctx_len, n_kv_heads, head_dim].
// Element e of part `part` (0 keys, 1 values) at position `pos` is element
// (part * ctx_len + pos) * kv_dim + e. In a `kv: array<u32>` buffer declared by the including
// kernel: with KV_F16 two elements share a word (pack2x16float: the even element in the low
// half), else a word holds one f32. With KV_TEXTURE in an rgba32uint texture the including kernel
// declares: f16, eight elements to a texel (element e in texel e >> 3), texel t at
// (t mod 2^TEX_SHIFT, t >> TEX_SHIFT). The including kernel's `p` has ctx_len, n_kv_heads and
// head_dim.

fn kv_elem(part: u32, pos: u32, e: u32) -> u32 {
    return (part * p.ctx_len + pos) * (p.n_kv_heads * p.head_dim) + e;
}

#if KV_TEXTURE
// The coordinates of texel t.
fn kv_coord(t: u32) -> vec2<u32> {
    return vec2<u32>(t & ((1u << {{TEX_SHIFT}}u) - 1u), t >> {{TEX_SHIFT}}u);
}
#elif KV_F16
// Elements `elem` and `elem + 1` (elem even).
fn kv_read2(elem: u32) -> vec2<f32> {
    return unpack2x16float(kv[elem >> 1u]);
}
fn kv_read(elem: u32) -> f32 {
    let w = unpack2x16float(kv[elem >> 1u]);
    return select(w.x, w.y, (elem & 1u) == 1u);
}
#else
fn kv_read2(elem: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(kv[elem]), bitcast<f32>(kv[elem + 1u]));
}
fn kv_read(elem: u32) -> f32 {
    return bitcast<f32>(kv[elem]);
}
#endif
