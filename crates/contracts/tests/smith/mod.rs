//! The wasm-smith configuration that generates contract-shaped modules: the host's imports, the
//! interface's exports, and the features the chain allows (and, with `chain_features = false`,
//! those it refuses too, so refusals are exercised). Shared by the property test
//! `arbitrary_modules.rs` and the fuzz target `fuzz/fuzz_targets/contract_modules.rs`.

use medledger_contracts::abi::{ENTRY_POINTS, HOST_FUNCTIONS};

fn types(params: &[wasmparser::ValType]) -> String {
    params.iter().map(|_| "i32").collect::<Vec<_>>().join(" ")
}

/// A module whose imports are every host function.
pub fn imports() -> Vec<u8> {
    let mut text = String::from("(module");
    for function in HOST_FUNCTIONS {
        text.push_str(&format!(
            r#" (import "env" "{}" (func (param {}) (result {})))"#,
            function.name,
            types(function.params),
            types(function.results)
        ));
    }
    text.push(')');
    wat::parse_str(text.replace("(param )", "").replace("(result )", "")).expect("imports")
}

/// A module whose exports are the interface's: memory and every entry point.
pub fn exports() -> Vec<u8> {
    let mut text = String::from(r#"(module (memory (export "memory") 1)"#);
    for entry in ENTRY_POINTS {
        text.push_str(&format!(
            r#" (func (export "{}") (param {}) (result {}) unreachable)"#,
            entry.name,
            types(entry.params),
            types(entry.results)
        ));
    }
    text.push(')');
    wat::parse_str(text).expect("exports")
}

pub fn config(chain_features: bool) -> wasm_smith::Config {
    let mut config = wasm_smith::Config {
        available_imports: Some(imports()),
        exports: Some(exports()),
        max_memories: 1,
        max_memory32_bytes: 32 * 65_536,
        max_tables: 1,
        max_instructions: 200,
        allow_start_export: false,
        ..wasm_smith::Config::default()
    };
    if chain_features {
        config.allow_floats = false;
        config.simd_enabled = false;
        config.relaxed_simd_enabled = false;
        config.threads_enabled = false;
        config.saturating_float_to_int_enabled = false;
    }
    config.gc_enabled = false;
    config.exceptions_enabled = false;
    config.tail_call_enabled = false;
    config.wide_arithmetic_enabled = false;
    config.extended_const_enabled = false;
    config.custom_page_sizes_enabled = false;
    config.memory64_enabled = false;
    // A newer encoding of the import section than the runtime's parser reads.
    config.compact_imports_enabled = false;
    config
}
