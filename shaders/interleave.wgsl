// Scatters raw weight words into the interleaved row layout (see quant.wgsl's row_start): word
// j of row r goes to word (r / 8) * row_words * 8 + j * 8 + r % 8 of the part.
//
// src: `words` words of the part's raw rows, starting at raw word `first_word` of the part
// dst: the part's buffer in the interleaved layout                  dst: [ceil(rows / 8) * 8 * row_words]

struct Params {
    words: u32,
    first_word: u32,
    row_words: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> src: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 64u + lid;
    if (i >= p.words) {
        return;
    }
    let w = p.first_word + i;
    let r = w / p.row_words;
    let j = w % p.row_words;
    dst[(r >> 3u) * p.row_words * 8u + j * 8u + (r & 7u)] = src[i];
}
