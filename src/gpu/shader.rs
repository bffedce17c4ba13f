//! WGSL sources, a small typed preprocessor for their variants, and the pipeline cache.
//!
//! Preprocessor: `#if NAME` / `#elif NAME` / `#else` / `#endif` keep lines when the flag NAME is
//! set; `{{NAME}}` is replaced by a constant's value. Pipelines are cached by (kernel, entry, defines).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// One WGSL kernel family: its source file and the shared files it needs in front of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kernel {
    Matmul,
    Embed,
    Norm,
    Rope,
    Attention,
    Elementwise,
    TopK,
}

const QUANT_WGSL: &str = include_str!("../../shaders/quant.wgsl");
const MATH_WGSL: &str = include_str!("../../shaders/math.wgsl");

impl Kernel {
    fn source(self) -> String {
        match self {
            Kernel::Matmul => format!("{QUANT_WGSL}\n{}", include_str!("../../shaders/matmul.wgsl")),
            Kernel::Embed => format!("{QUANT_WGSL}\n{}", include_str!("../../shaders/embed.wgsl")),
            Kernel::Norm => include_str!("../../shaders/norm.wgsl").to_string(),
            Kernel::Rope => include_str!("../../shaders/rope.wgsl").to_string(),
            Kernel::Attention => format!("{MATH_WGSL}\n{}", include_str!("../../shaders/attention.wgsl")),
            Kernel::Elementwise => format!("{MATH_WGSL}\n{}", include_str!("../../shaders/elementwise.wgsl")),
            Kernel::TopK => include_str!("../../shaders/topk.wgsl").to_string(),
        }
    }
}

/// The defines one variant of a kernel is built with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Defines(BTreeMap<&'static str, u32>);

impl Defines {
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets a flag tested by `#if NAME`.
    pub fn flag(mut self, name: &'static str) -> Self {
        self.0.insert(name, 1);
        self
    }
    /// Sets a constant substituted for `{{NAME}}` (also true for `#if` when non-zero).
    pub fn constant(mut self, name: &'static str, value: u32) -> Self {
        self.0.insert(name, value);
        self
    }
    fn is_set(&self, name: &str) -> bool {
        self.0.get(name).is_some_and(|v| *v != 0)
    }
}

/// Expands `#if`/`#elif`/`#else`/`#endif` and `{{NAME}}` in `source`.
pub fn preprocess(source: &str, defines: &Defines) -> String {
    // Each open #if: (this branch is live, some branch of this #if was already taken).
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let mut out = String::with_capacity(source.len());
    for line in source.lines() {
        let trimmed = line.trim_start();
        let parent_live = stack.iter().all(|(live, _)| *live);
        if let Some(name) = trimmed.strip_prefix("#if ") {
            let taken = defines.is_set(name.trim());
            stack.push((taken, taken));
        } else if let Some(name) = trimmed.strip_prefix("#elif ") {
            if let Some(top) = stack.last_mut() {
                let live = !top.1 && defines.is_set(name.trim());
                *top = (live, top.1 || live);
            }
        } else if trimmed.starts_with("#else") {
            if let Some(top) = stack.last_mut() {
                *top = (!top.1, true);
            }
        } else if trimmed.starts_with("#endif") {
            stack.pop();
        } else if parent_live {
            let mut text = line.to_string();
            for (name, value) in &defines.0 {
                let token = format!("{{{{{name}}}}}");
                if text.contains(&token) {
                    text = text.replace(&token, &value.to_string());
                }
            }
            out.push_str(&text);
            out.push('\n');
        } else {
            out.push('\n'); // keep line numbers stable for error messages
        }
    }
    out
}

type PipelineKey = (Kernel, &'static str, Defines);

/// Compiled compute pipelines, built on first use.
#[derive(Default)]
pub struct PipelineCache {
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
}

impl PipelineCache {
    pub fn get(
        &self,
        device: &wgpu::Device,
        kernel: Kernel,
        entry: &'static str,
        defines: &Defines,
    ) -> Arc<wgpu::ComputePipeline> {
        let key = (kernel, entry, defines.clone());
        let mut map = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = map.get(&key) {
            return p.clone();
        }
        let source = preprocess(&kernel.source(), defines);
        let label = format!("{kernel:?}/{entry}");
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(&label),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let pipeline = Arc::new(device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        }));
        map.insert(key, pipeline.clone());
        pipeline
    }

    /// Pipelines compiled so far.
    pub fn compiled(&self) -> usize {
        self.pipelines.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocess_branches_and_constants() {
        let src = "a\n#if X\nx{{N}}\n#elif Y\ny\n#else\nz\n#endif\nb";
        let d = Defines::new().flag("Y").constant("N", 7);
        assert_eq!(preprocess(src, &d).split_whitespace().collect::<Vec<_>>(), ["a", "y", "b"]);
        let d = Defines::new().flag("X").constant("N", 7);
        assert_eq!(preprocess(src, &d).split_whitespace().collect::<Vec<_>>(), ["a", "x7", "b"]);
        let d = Defines::new();
        assert_eq!(preprocess(src, &d).split_whitespace().collect::<Vec<_>>(), ["a", "z", "b"]);
    }
}
