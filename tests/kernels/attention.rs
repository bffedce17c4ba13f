//! Split-K attention (`attention.wgsl`'s slices, then `attention_combine.wgsl`) over f16 and f32
//! KV caches in buffers, and `attend_lanes` over f16 caches in textures, against an f64 reference
//! computed from the same cache values.

use ferrolm::gpu::ops::{self, AttentionArgs};
use ferrolm::gpu::{Context, KvLayer, Step, StepState};
use ferrolm::quant::testdata::Rng;

use super::attn_in::kv_elem;
use crate::*;

/// Positions token t of a query block at pos0 sees: 0..=pos0+t, or the last `window` of them.
fn visible(pos0: u32, t: u32, window: u32) -> std::ops::Range<usize> {
    let len = (pos0 + t + 1) as usize;
    let start = if window > 0 { len.saturating_sub(window as usize) } else { 0 };
    start..len
}

/// q: [n_tokens, n_heads, head_dim]; cache: keys then values, each [ctx_len, n_kv_heads, head_dim].
fn attention_reference(q: &[f32], cache: &[f32], a: &AttentionArgs, pos0: u32) -> Vec<f64> {
    let (d, nh, nkv, ctx_len) = (a.head_dim as usize, a.n_heads as usize, a.n_kv_heads as usize, a.ctx_len as usize);
    let at = |part: usize, j: usize, kvh: usize| &cache[kv_elem(part, j, kvh * d, ctx_len, nkv * d)..][..d];
    let mut out = Vec::new();
    for t in 0..a.n_tokens {
        for h in 0..nh {
            let kvh = h / (nh / nkv);
            let qv = &q[(t as usize * nh + h) * d..][..d];
            let range = visible(pos0, t, a.window);
            let scores: Vec<f64> = range
                .clone()
                .map(|j| {
                    let mut s = qv.iter().zip(at(0, j, kvh)).map(|(&x, &y)| x as f64 * y as f64).sum::<f64>() * a.scale as f64;
                    if a.softcap > 0.0 {
                        s = a.softcap as f64 * (s / a.softcap as f64).tanh();
                    }
                    s
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let p: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let l: f64 = p.iter().sum();
            let mut o = vec![0.0; d];
            for (j, pj) in range.zip(&p) {
                for (oc, &v) in o.iter_mut().zip(at(1, j, kvh)) {
                    *oc += pj * v as f64;
                }
            }
            out.extend(o.iter().map(|v| v / l));
        }
    }
    out
}

/// Uploads a KV cache of these values as f16 pairs (rounding `cache` to what the GPU holds) or
/// f32, into a buffer, or (f16) a texture.
fn upload_cache(ctx: &Context, cache: &mut [f32], f16: bool, texture: bool) -> KvLayer {
    if !f16 {
        return KvLayer::Buffer(upload(ctx, "kv f32", cache));
    }
    for v in cache.iter_mut() {
        *v = half::f16::from_f32(*v).to_f32();
    }
    let bits = |v: f32| half::f16::from_f32(v).to_bits() as u32;
    let words: Vec<u32> = cache.chunks(2).map(|p| bits(p[0]) | bits(p[1]) << 16).collect();
    let kv = if texture { KvLayer::texture(ctx, "kv f16", cache.len() as u64).unwrap() } else { KvLayer::buffer(ctx, "kv f16", words.len() as u64).unwrap() };
    kv.write_words(ctx, &words);
    kv
}

/// Checks `a` in every layout: a workgroup per (token, head, slice), a thread per one (with at
/// least the slices that layout needs at this context length), and for an f16 cache whose heads
/// fill whole texels, the cache in a texture (`attend_lanes`).
fn check_attention(ctx: &Context, a: AttentionArgs, pos0: u32, q_scale: f32, seed: u64) {
    check_attention_layout(ctx, AttentionArgs { thread_per_row: false, ..a }, pos0, q_scale, seed, false);
    let rows = AttentionArgs { thread_per_row: true, ..a };
    check_attention_layout(ctx, AttentionArgs { splits: a.splits.max(rows.min_splits()), ..rows }, pos0, q_scale, seed, false);
    if a.kv_texture_fits() {
        check_attention_layout(ctx, a, pos0, q_scale, seed, true);
    }
}

/// Runs attention at `pos0` with random q and a random cache (rounded to f16 first for an f16
/// cache, so the reference sees the same values). Cache positions no query may see (after the last
/// query's position, before the first query's window) hold large values, so reading them shows.
fn check_attention_layout(ctx: &Context, a: AttentionArgs, pos0: u32, q_scale: f32, seed: u64, kv_texture: bool) {
    let (d, nh, nkv, ctx_len) = (a.head_dim as usize, a.n_heads as usize, a.n_kv_heads as usize, a.ctx_len as usize);
    let kv_dim = nkv * d;
    let last = (pos0 + a.n_tokens) as usize;
    let first = visible(pos0, 0, a.window).start;
    assert!(last <= ctx_len);
    let mut rng = Rng::new(seed);
    let q = normals(&mut rng, a.n_tokens as usize * nh * d, q_scale);
    let mut cache = normals(&mut rng, 2 * ctx_len * kv_dim, 1.0);
    for part in 0..2 {
        for pos in (0..first).chain(last..ctx_len) {
            cache[kv_elem(part, pos, 0, ctx_len, kv_dim)..][..kv_dim].fill(50.0);
        }
    }
    let kv_buf = upload_cache(ctx, &mut cache, a.kv_f16, kv_texture);
    let q_buf = upload(ctx, "q", &q);
    let scratch = ctx.storage_buffer("scratch", a.scratch_elems() * 4).unwrap();
    let out0 = normals(&mut rng, q.len() + 3, 1.0);
    let out = upload(ctx, "out", &out0);
    run_with(ctx, StepState::at(pos0), |step| ops::attention(step, &q_buf, &kv_buf, &scratch, &out, &a));
    let got = read(ctx, &out, out0.len());
    let mut want = attention_reference(&q, &cache, &a, pos0);
    // The tail after the last head is untouched.
    let mut tol: Vec<f64> = want.iter().map(|w| 2e-5 + 1e-4 * w.abs()).collect();
    want.extend(out0[q.len()..].iter().map(|&v| v as f64));
    tol.extend([0.0; 3]);
    assert_close(&format!("attention at pos0 {pos0} {a:?}, KV in a texture: {kv_texture}"), &got, &want, &tol);
}

fn args(n_tokens: u32, pos0: u32, head_dim: u32, splits: u32, kv_f16: bool) -> AttentionArgs {
    AttentionArgs {
        n_tokens,
        n_heads: 6,
        n_kv_heads: 2,
        head_dim,
        ctx_len: pos0 + n_tokens + 7,
        kv_f16,
        scale: 1.0 / (head_dim as f32).sqrt(),
        softcap: 0.0,
        window: 0,
        splits,
        // Prefill blocks of 2 queries (5 tokens: the last block is partial).
        q_block: if n_tokens > 1 { 2 } else { 1 },
        thread_per_row: false,
    }
}

/// Decode at positions 1, 100 and 4000 with 1, 3 and 16 slices (more slices than positions
/// leaves some empty), both cache types; prefill blocks at the same positions.
#[test]
fn attention_positions_splits_and_cache_types() {
    let ctx = common::gpu();
    let mut seed = 100;
    for pos0 in [1, 100, 4000] {
        for splits in [1, 3, 16] {
            for kv_f16 in [false, true] {
                seed += 1;
                check_attention(&ctx, args(1, pos0, 64, splits, kv_f16), pos0, 1.0, seed);
            }
            seed += 1;
            check_attention(&ctx, args(5, pos0, 64, splits, splits == 3), pos0, 1.0, seed);
        }
    }
}

/// Head sizes up to 256, grouped-query layouts (MHA, MQA, groups of 2 and 3), sharp softmax.
#[test]
fn attention_head_sizes_and_gqa() {
    let ctx = common::gpu();
    for (i, head_dim) in [80, 128, 256].into_iter().enumerate() {
        let seed = 200 + 10 * i as u64;
        check_attention(&ctx, args(1, 100, head_dim, 3, true), 100, 1.0, seed);
        check_attention(&ctx, args(3, 100, head_dim, 16, false), 100, 1.0, seed + 1);
    }
    for (n_kv_heads, splits) in [(6, 3), (1, 16), (3, 1)] {
        let a = AttentionArgs { n_kv_heads, ..args(3, 100, 64, splits, n_kv_heads != 6) };
        check_attention(&ctx, a, 100, 1.0, 300 + n_kv_heads as u64);
    }
    check_attention(&ctx, args(3, 70, 64, 3, false), 70, 4.0, 310);
    // A cache longer than the positions used (ctx_len only sets where the values start).
    check_attention(&ctx, AttentionArgs { ctx_len: 4001, ..args(2, 100, 64, 3, true) }, 100, 1.0, 311);
}

#[test]
fn attention_softcap_and_window() {
    let ctx = common::gpu();
    let softcap = |a: AttentionArgs| AttentionArgs { softcap: 1.5, ..a };
    let window = |w: u32| move |a: AttentionArgs| AttentionArgs { window: w, ..a };
    let mut seed = 400;
    for (pos0, splits, kv_f16) in [(100, 3, false), (4000, 16, true), (1, 1, true)] {
        let mut check = |a: AttentionArgs, q_scale: f32| {
            seed += 1;
            check_attention(&ctx, a, pos0, q_scale, seed);
        };
        // Soft-cap with scores well past the cap.
        check(softcap(args(1, pos0, 64, splits, kv_f16)), 4.0);
        check(softcap(args(5, pos0, 128, splits, !kv_f16)), 4.0);
        // Window smaller than the context (its start not on a slice or tile boundary), larger
        // than the context, of one position; decode and prefill.
        check(window(50)(args(1, pos0, 64, splits, kv_f16)), 1.0);
        check(window(50)(args(5, pos0, 64, splits, kv_f16)), 1.0);
        check(window(5000)(args(3, pos0, 64, splits, kv_f16)), 1.0);
        check(window(1)(args(3, pos0, 64, splits, !kv_f16)), 1.0);
        // Both.
        check(softcap(window(20)(args(5, pos0, 64, splits, kv_f16))), 4.0);
    }
}

/// Prefill blocks of 8 or more tokens, which CPU drivers with subgroups of 8 (lavapipe) run from
/// a texture cache with a workgroup per block of 8 query tokens (`attend_queries`): partial
/// blocks, heads of 1 to 4 texels per lane (64, 80, 96, 256 dims), grouped queries, soft-cap, and
/// windows that start at different positions for the block's tokens.
#[test]
fn attention_prefill_query_blocks() {
    let ctx = common::gpu();
    let mut seed = 500;
    for (n_tokens, pos0) in [(8, 0), (13, 100), (21, 3)] {
        for head_dim in [64, 80, 96, 256] {
            seed += 1;
            check_attention(&ctx, args(n_tokens, pos0, head_dim, 3, true), pos0, 1.0, seed);
        }
        let a = AttentionArgs { n_heads: 8, n_kv_heads: 2, softcap: 1.5, ..args(n_tokens, pos0, 64, 3, true) };
        check_attention(&ctx, a, pos0, 4.0, seed + 10);
        for window in [1, 5, 50] {
            check_attention(&ctx, AttentionArgs { window, ..args(n_tokens, pos0, 128, 3, true) }, pos0, 1.0, seed + 20 + window as u64);
        }
    }
}

#[test]
fn attention_rejects_bad_shapes() {
    let ctx = common::gpu();
    let ok = args(1, 0, 64, 3, true);
    let buf = ctx.storage_buffer("b", ok.scratch_elems() * 4).unwrap();
    let small = ctx.storage_buffer("small", ok.scratch_elems() * 4 - 4).unwrap();
    let kv = KvLayer::Buffer(buf.clone());
    let mut step = Step::new(&ctx);
    for a in [
        AttentionArgs { head_dim: 320, ..ok },
        AttentionArgs { head_dim: 63, ..ok },
        AttentionArgs { n_kv_heads: 4, ..ok },
        AttentionArgs { n_kv_heads: 0, ..ok },
        AttentionArgs { splits: 0, ..ok },
        AttentionArgs { splits: ops::MAX_SPLITS + 1, ..ok },
        // A thread per row would go through more positions than lavapipe lets it.
        AttentionArgs { thread_per_row: true, ctx_len: 2 * ops::attend_rows_max_keys(64), splits: 1, ..ok },
    ] {
        assert!(ops::attention(&mut step, &buf, &kv, &buf, &buf, &a).is_err(), "{a:?}");
    }
    assert!(ops::attention(&mut step, &buf, &kv, &small, &buf, &ok).is_err(), "scratch too small");
    // A cache in a texture: f16 only, heads of whole texels, positions per thread under
    // lavapipe's loop limit.
    let texture = KvLayer::texture(&ctx, "kv", 1024).unwrap();
    for a in [
        AttentionArgs { kv_f16: false, ..ok },
        AttentionArgs { head_dim: 36, ..ok },
        AttentionArgs { head_dim: 264, ..ok },
        AttentionArgs { ctx_len: 8 * 65536, ..ok },
    ] {
        assert!(ops::attention(&mut step, &buf, &texture, &buf, &buf, &a).is_err(), "{a:?} from a texture");
    }
    assert_eq!(step.dispatches(), 0);
    ops::attention(&mut step, &buf, &kv, &buf, &buf, &ok).expect("a valid shape");
    ops::attention(&mut step, &buf, &texture, &buf, &buf, &ok).expect("a valid shape, cache in a texture");
}

/// One thread going through the most positions it may (head sizes 64 and 256, without and with a
/// window): lavapipe cuts an invocation short after 65535 loop iterations, which shows as wrong
/// outputs if `attend_rows_max_keys` allows too many.
#[test]
fn attention_rows_at_the_loop_limit() {
    let ctx = common::gpu();
    for (head_dim, with_window, seed) in [(64, false, 41), (256, false, 42), (256, true, 43)] {
        let max = ops::attend_rows_max_keys(head_dim);
        let (ctx_len, window) = if with_window { (2 * max, max) } else { (max, 0) };
        let pos0 = ctx_len - 1;
        let a = AttentionArgs { thread_per_row: true, ctx_len, window, ..args(1, pos0, head_dim, 1, true) };
        assert_eq!(a.min_splits(), 1);
        check_attention_layout(&ctx, a, pos0, 1.0, seed, false);
    }
}

/// One recording replayed at several positions: the kernels read pos0 from the state each run
/// writes, not from the recording.
#[test]
fn attention_recording_replayed_at_new_positions() {
    let ctx = common::gpu();
    let a = AttentionArgs { ctx_len: 4001, ..args(2, 0, 64, 16, true) };
    let mut rng = Rng::new(600);
    let q = normals(&mut rng, 2 * 6 * 64, 1.0);
    let mut cache = normals(&mut rng, 2 * 4001 * 2 * 64, 1.0);
    for kv_texture in [false, true] {
        let kv_buf = upload_cache(&ctx, &mut cache, true, kv_texture);
        let (q_buf, out) = (upload(&ctx, "q", &q), upload(&ctx, "out", &vec![f32::NAN; q.len()]));
        let scratch = ctx.storage_buffer("scratch", a.scratch_elems() * 4).unwrap();
        let mut step = Step::new(&ctx);
        ops::attention(&mut step, &q_buf, &kv_buf, &scratch, &out, &a).unwrap();
        let recording = step.finish();
        for pos0 in [3999, 1, 100, 0] {
            recording.run(&ctx, &StepState::at(pos0), None);
            let want = attention_reference(&q, &cache, &a, pos0);
            assert_close_rel(&format!("replayed attention at pos0 {pos0}, KV in a texture: {kv_texture}"), &read(&ctx, &out, q.len()), &want, 2e-5, 1e-4);
        }
    }
}

/// More workgroups than one dispatch dimension allows (folded into 2-D): every (token, head,
/// slice) is still computed once.
#[test]
fn attention_folds_large_dispatches() {
    let ctx = common::gpu();
    let (n_tokens, n_heads) = (64, 32);
    let max = ctx.limits.max_workgroups_per_dim;
    let splits = (max / (n_tokens * n_heads) + 1).min(ops::MAX_SPLITS);
    let a = AttentionArgs { n_tokens, n_heads, n_kv_heads: 4, head_dim: 2, ctx_len: n_tokens + 3, kv_f16: false, scale: 0.7, softcap: 0.0, window: 0, splits, q_block: 1, thread_per_row: false };
    if n_tokens * n_heads * splits <= max {
        eprintln!("attention_folds_large_dispatches: {max} workgroups per dimension; no folding to test");
    }
    check_attention(&ctx, a, 0, 1.0, 700);
}
