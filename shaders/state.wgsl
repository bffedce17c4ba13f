// The per-step state every recorded step writes before it runs (gpu/step.rs `StepState`), at
// `@binding(1)` of every kernel: the position of the step's first token and the repetition
// penalties' settings. Prepended to the kernels that read it.

struct StepState {
    pos0: u32,
    penalty_pairs: u32,
    repeat: f32,
    presence: f32,
    frequency: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(1) var<uniform> state: StepState;
