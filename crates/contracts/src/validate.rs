//! What a module must be to be deployed: checked once, when its code is stored, so that every
//! later call runs code that cannot break determinism or the chain's bounds.
//!
//! A module is refused, with the reason, for floating-point types or instructions (whose NaN bits
//! differ between machines), threads (shared memory, atomics), SIMD, 64-bit memory, more than one
//! memory, an import the host does not offer or offers with another signature, a memory whose
//! initial size is above the limit, code above the size limit, a start function that does work,
//! or a missing entry point. What passes here is also valid to the runtime (`wasmi`), whose engine
//! is configured to refuse the same features.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::Serialize;
use wasmparser::{
    CompositeInnerType, ExternalKind, Operator, Parser, Payload, TypeRef, ValType, Validator,
    WasmFeatures,
};

use crate::abi::{ENTRY_POINTS, HOST_FUNCTIONS, MEMORY_EXPORT};

/// Why a module was refused. Its code and text go into the uploading transaction's receipt.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeRefusal {
    #[error("the module is {size} bytes, above the limit of {limit}")]
    TooLarge { size: usize, limit: u64 },
    #[error("the module is not valid WebAssembly: {0}")]
    Invalid(String),
    #[error("the module uses floating point ({0}), which is not deterministic across machines")]
    FloatingPoint(String),
    #[error("the module uses threads or shared memory ({0})")]
    Threads(String),
    #[error("the module uses a feature the runtime does not offer: {0}")]
    Feature(String),
    #[error("the module imports {module}.{name}, which the host does not offer")]
    UnknownImport { module: String, name: String },
    #[error("the module imports {name} with another signature than the host's")]
    ImportSignature { name: String },
    #[error("the module imports a {0}; only host functions may be imported")]
    ImportKind(&'static str),
    #[error("the module's memory starts at {pages} pages, above the limit of {limit}")]
    MemoryTooLarge { pages: u64, limit: u64 },
    #[error("the module must define exactly one memory, exported as \"memory\"")]
    Memory,
    #[error("the module's start function does work; initialisation belongs in `instantiate`")]
    StartFunction,
    #[error("the module does not export the function {0} with the interface's signature")]
    MissingExport(&'static str),
}

impl CodeRefusal {
    pub fn code(&self) -> &'static str {
        match self {
            CodeRefusal::TooLarge { .. } => "code_too_large",
            CodeRefusal::Invalid(_) => "code_invalid",
            CodeRefusal::FloatingPoint(_) => "code_floating_point",
            CodeRefusal::Threads(_) => "code_threads",
            CodeRefusal::Feature(_) => "code_feature",
            CodeRefusal::UnknownImport { .. } => "code_unknown_import",
            CodeRefusal::ImportSignature { .. } => "code_import_signature",
            CodeRefusal::ImportKind(_) => "code_import_kind",
            CodeRefusal::MemoryTooLarge { .. } => "code_memory_too_large",
            CodeRefusal::Memory => "code_memory",
            CodeRefusal::StartFunction => "code_start_function",
            CodeRefusal::MissingExport(_) => "code_missing_export",
        }
    }
}

/// The bounds a module is checked against (chain parameters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeLimits {
    pub code_bytes_max: u64,
    pub memory_pages_max: u64,
}

/// What validation learnt of a module, kept beside its code.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct CodeFacts {
    pub size: u64,
    /// The host functions it imports, sorted.
    pub imports: Vec<String>,
    pub memory_pages_initial: u64,
    /// Whether it exports `migrate`, which an upgrade calls.
    pub migrates: bool,
}

/// The WebAssembly features a contract may use: the MVP with sign extension, multi-value,
/// mutable globals, bulk memory and reference types (what clang emits by default), and none of
/// floating point, threads, SIMD, 64-bit or multiple memories.
pub(crate) fn features() -> WasmFeatures {
    // GC_TYPES is the MVP's own types (funcref and the like), not the GC proposal's.
    WasmFeatures::GC_TYPES
        | WasmFeatures::MUTABLE_GLOBAL
        | WasmFeatures::SIGN_EXTENSION
        | WasmFeatures::MULTI_VALUE
        | WasmFeatures::BULK_MEMORY
        | WasmFeatures::REFERENCE_TYPES
}

fn classify(error: wasmparser::BinaryReaderError) -> CodeRefusal {
    let message = error.message().to_string();
    let lower = message.to_ascii_lowercase();
    if lower.contains("float") {
        CodeRefusal::FloatingPoint(message)
    } else if lower.contains("thread") || lower.contains("shared") || lower.contains("atomic") {
        CodeRefusal::Threads(message)
    } else if lower.contains("support is not enabled") || lower.contains("proposal not enabled") {
        CodeRefusal::Feature(message)
    } else {
        CodeRefusal::Invalid(message)
    }
}

fn is_float(ty: &ValType) -> bool {
    matches!(ty, ValType::F32 | ValType::F64)
}

/// Checks `code` against the interface and `limits`, and returns what it learnt.
pub fn validate(code: &[u8], limits: CodeLimits) -> Result<CodeFacts, CodeRefusal> {
    if code.len() as u64 > limits.code_bytes_max {
        return Err(CodeRefusal::TooLarge {
            size: code.len(),
            limit: limits.code_bytes_max,
        });
    }
    // The standard validator with the features above: floats and threads are refused by it,
    // with the instruction's offset in the message.
    let mut validator = Validator::new_with_features(features());
    validator.validate_all(code).map_err(classify)?;

    let mut types: Vec<Option<(Vec<ValType>, Vec<ValType>)>> = Vec::new();
    let mut imported_functions = 0u32;
    let mut function_types: Vec<u32> = Vec::new();
    let mut imports = Vec::new();
    let mut memories = 0u32;
    let mut memory_pages_initial = 0u64;
    let mut exports: Vec<(String, ExternalKind, u32)> = Vec::new();
    let mut start: Option<u32> = None;
    let mut body_index = 0u32;
    for payload in Parser::new(0).parse_all(code) {
        match payload.map_err(classify)? {
            Payload::TypeSection(reader) => {
                for group in reader {
                    for sub in group.map_err(classify)?.into_types() {
                        types.push(match &sub.composite_type.inner {
                            CompositeInnerType::Func(func) => {
                                if func.params().iter().chain(func.results()).any(is_float) {
                                    return Err(CodeRefusal::FloatingPoint(
                                        "a function type with f32 or f64".into(),
                                    ));
                                }
                                Some((func.params().to_vec(), func.results().to_vec()))
                            }
                            _ => None,
                        });
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader {
                    let import = import.map_err(classify)?;
                    let TypeRef::Func(type_index) = import.ty else {
                        return Err(CodeRefusal::ImportKind(match import.ty {
                            TypeRef::Memory(_) => "memory",
                            TypeRef::Table(_) => "table",
                            TypeRef::Global(_) => "global",
                            _ => "tag",
                        }));
                    };
                    let offered = HOST_FUNCTIONS
                        .iter()
                        .find(|function| import.module == "env" && function.name == import.name)
                        .ok_or_else(|| CodeRefusal::UnknownImport {
                            module: import.module.to_string(),
                            name: import.name.to_string(),
                        })?;
                    let signature = types.get(type_index as usize).cloned().flatten();
                    if signature
                        .as_ref()
                        .map(|(p, r)| (p.as_slice(), r.as_slice()))
                        != Some((offered.params, offered.results))
                    {
                        return Err(CodeRefusal::ImportSignature {
                            name: import.name.to_string(),
                        });
                    }
                    imported_functions += 1;
                    imports.push(import.name.to_string());
                }
            }
            Payload::FunctionSection(reader) => {
                for type_index in reader {
                    function_types.push(type_index.map_err(classify)?);
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader {
                    let memory = memory.map_err(classify)?;
                    memories += 1;
                    if memory.initial > limits.memory_pages_max {
                        return Err(CodeRefusal::MemoryTooLarge {
                            pages: memory.initial,
                            limit: limits.memory_pages_max,
                        });
                    }
                    memory_pages_initial = memory.initial;
                }
            }
            Payload::GlobalSection(reader) => {
                for global in reader {
                    if is_float(&global.map_err(classify)?.ty.content_type) {
                        return Err(CodeRefusal::FloatingPoint("a global of f32 or f64".into()));
                    }
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(classify)?;
                    exports.push((export.name.to_string(), export.kind, export.index));
                }
            }
            Payload::StartSection { func, .. } => start = Some(func),
            Payload::CodeSectionEntry(body) => {
                let index = imported_functions + body_index;
                body_index += 1;
                for local in body.get_locals_reader().map_err(classify)? {
                    if is_float(&local.map_err(classify)?.1) {
                        return Err(CodeRefusal::FloatingPoint("a local of f32 or f64".into()));
                    }
                }
                if start == Some(index) {
                    let mut operators = body.get_operators_reader().map_err(classify)?;
                    let mut count = 0;
                    while !operators.eof() {
                        let operator = operators.read().map_err(classify)?;
                        count += 1;
                        if count > 1 || !matches!(operator, Operator::End) {
                            return Err(CodeRefusal::StartFunction);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(start) = start {
        // An imported start function is a host call at instantiation: work too.
        if start < imported_functions {
            return Err(CodeRefusal::StartFunction);
        }
    }
    if memories != 1
        || !exports
            .iter()
            .any(|(name, kind, _)| name == MEMORY_EXPORT && *kind == ExternalKind::Memory)
    {
        return Err(CodeRefusal::Memory);
    }
    let signature_of = |index: u32| -> Option<(Vec<ValType>, Vec<ValType>)> {
        let local = index.checked_sub(imported_functions)?;
        let type_index = *function_types.get(local as usize)?;
        types.get(type_index as usize).cloned().flatten()
    };
    let mut migrates = false;
    for entry in ENTRY_POINTS {
        let found = exports
            .iter()
            .find(|(name, kind, _)| name == entry.name && *kind == ExternalKind::Func)
            .and_then(|(_, _, index)| signature_of(*index));
        match found {
            Some((params, results))
                if params.as_slice() == entry.params && results.as_slice() == entry.results =>
            {
                migrates |= entry.name == "migrate";
            }
            Some(_) => return Err(CodeRefusal::MissingExport(entry.name)),
            None if entry.required => return Err(CodeRefusal::MissingExport(entry.name)),
            None => {}
        }
    }
    imports.sort();
    Ok(CodeFacts {
        size: code.len() as u64,
        imports,
        memory_pages_initial,
        migrates,
    })
}
