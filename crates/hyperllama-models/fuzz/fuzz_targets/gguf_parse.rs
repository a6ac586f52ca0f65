//! Fuzzes the GGUF metadata parser: any input must give `Ok` or `Err`, never a panic, an
//! out-of-bounds read or an allocation the input does not justify.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    let _ = hyperllama_models::gguf::parse(data, Some(len));
    let _ = hyperllama_models::gguf::parse(data, None);
});
