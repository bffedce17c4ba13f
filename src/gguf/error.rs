//! Errors produced while reading GGUF headers.

/// Everything that can be wrong with a GGUF header. `Display` is one line that
/// names the problem with its offsets / keys / tensor names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GgufError {
    #[error("not a GGUF file: magic is {found:#010x}, expected 'GGUF' (0x46554747)")]
    BadMagic { found: u32 },
    #[error("unsupported GGUF version {version} (this reader supports versions 2 and 3)")]
    UnsupportedVersion { version: u32 },
    #[error("big-endian GGUF files are not supported (version field reads {version:#010x})")]
    BigEndian { version: u32 },
    #[error("the prefix is {prefix_len} bytes but the file is said to be only {file_len} bytes")]
    PrefixLongerThanFile { prefix_len: u64, file_len: u64 },
    #[error("file truncated: reading {what} at offset {offset} needs {needed} bytes but the file ends at {file_len}")]
    Truncated { what: &'static str, offset: u64, needed: u64, file_len: u64 },
    #[error("GGUF string at offset {offset} claims {len} bytes but the file has only {available} left")]
    StringTooLong { offset: u64, len: u64, available: u64 },
    #[error("array {key_q} at offset {offset} claims {len} elements (at least {min_bytes} bytes) but the file has only {available} bytes left", key_q = crate::error::quote(.key))]
    ArrayTooLong { key: String, offset: u64, len: u64, min_bytes: u128, available: u64 },
    #[error("header claims {count} tensors but the file has room for at most {max} tensor infos")]
    TooManyTensors { count: u64, max: u64 },
    #[error("header claims {count} metadata entries but the file has room for at most {max}")]
    TooManyKv { count: u64, max: u64 },
    #[error("metadata {key_q}: arrays nested deeper than {max_depth} levels", key_q = crate::error::quote(.key))]
    NestingTooDeep { key: String, max_depth: u32 },
    #[error("metadata {key_q} at offset {offset}: unknown value type {type_id}", key_q = crate::error::quote(.key))]
    UnknownValueType { key: String, offset: u64, type_id: u32 },
    #[error("{what} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { what: &'static str, offset: u64 },
    #[error("duplicate metadata key {key_q}", key_q = crate::error::quote(.key))]
    DuplicateKey { key: String },
    #[error("metadata {key_q} has type {found}, expected {expected}", key_q = crate::error::quote(.key))]
    WrongType { key: String, expected: &'static str, found: String },
    #[error("general.alignment is {value}, which is not a non-zero power of two")]
    BadAlignment { value: u64 },
    #[error("tensor {tensor_q} has {n_dims} dimensions (must be 1 to 4)", tensor_q = crate::error::quote(.tensor))]
    TooManyDims { tensor: String, n_dims: u32 },
    #[error("tensor {tensor_q} has a zero-sized dimension: {dims:?}", tensor_q = crate::error::quote(.tensor))]
    ZeroDim { tensor: String, dims: Vec<u64> },
    #[error("tensor {tensor_q} dimensions {dims:?} overflow the element or byte count", tensor_q = crate::error::quote(.tensor))]
    DimsOverflow { tensor: String, dims: Vec<u64> },
    #[error("tensor {tensor_q} has unknown ggml type id {type_id}", tensor_q = crate::error::quote(.tensor))]
    UnknownTensorType { tensor: String, type_id: u32 },
    #[error("tensor {tensor_q}: ne0 = {ne0} is not a multiple of the {ty} block size {block}", tensor_q = crate::error::quote(.tensor))]
    BlockMismatch { tensor: String, ty: &'static str, ne0: u64, block: u64 },
    #[error("tensor {tensor_q}: relative data offset {offset} is not a multiple of the alignment {alignment}", tensor_q = crate::error::quote(.tensor))]
    MisalignedTensor { tensor: String, offset: u64, alignment: u64 },
    #[error("tensor {tensor_q}: data bytes {start}..{end} lie past the end of the file ({file_len} bytes)", tensor_q = crate::error::quote(.tensor))]
    TensorOutOfBounds { tensor: String, start: u64, end: u128, file_len: u64 },
    #[error("duplicate tensor name {name_q}", name_q = crate::error::quote(.name))]
    DuplicateTensor { name: String },
    #[error("the tensor data section would start past 2^64 bytes")]
    DataOffsetOverflow,
}
