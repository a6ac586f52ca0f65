use std::path::PathBuf;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::types::type_id;
use super::*;

const KEY: &str = "general.architecture";

/// A file using every value type, nested arrays and tensors of several ggml types.
fn sample(version: u32) -> GgufBuilder {
    let nested = Array::Array(vec![
        Array::U32(vec![1, 2, 3]),
        Array::Array(vec![
            Array::String(vec!["deep".into()]),
            Array::Bool(vec![]),
        ]),
        Array::F64(vec![]),
    ]);
    GgufBuilder::new(version)
        .kv(KEY, "llama")
        .kv("llama.context_length", 8192u32)
        .kv("llama.embedding_length", 576u64)
        .kv("llama.block_count", 30i32)
        .kv("general.file_type", 15u32)
        .kv(
            "tokenizer.chat_template",
            "{% for m in messages %}{{ m.content }}\n{% endfor %}",
        )
        .kv("t.u8", 0xfeu8)
        .kv("t.i8", -7i8)
        .kv("t.u16", 0xbeefu16)
        .kv("t.i16", -300i16)
        .kv("t.u32", u32::MAX)
        .kv("t.i32", i32::MIN)
        .kv("t.f32", 1.5f32)
        .kv("t.bool", true)
        .kv("t.string", "héllo ✓")
        .kv("t.empty_string", "")
        .kv("t.u64", u64::MAX)
        .kv("t.i64", i64::MIN)
        .kv("t.f64", -0.25f64)
        .kv("a.u8", Array::U8(vec![0, 1, 255]))
        .kv("a.i8", Array::I8(vec![-128, 127]))
        .kv("a.u16", Array::U16(vec![65535]))
        .kv("a.i16", Array::I16(vec![-1, 1]))
        .kv("a.u32", Array::U32(vec![]))
        .kv("a.i32", Array::I32(vec![-5, 5, 0]))
        .kv("a.f32", Array::F32(vec![0.5, -2.0]))
        .kv("a.bool", Array::Bool(vec![true, false, true]))
        .kv(
            "a.string",
            Array::String(vec!["<s>".into(), "".into(), "ĠThe".into()]),
        )
        .kv("a.u64", Array::U64(vec![u64::MAX, 0]))
        .kv("a.i64", Array::I64(vec![i64::MIN]))
        .kv("a.f64", Array::F64(vec![1e300]))
        .kv("a.nested", nested)
        .tensor(
            "token_embd.weight",
            vec![4, 2],
            GgmlType::F32,
            (0..32).collect(),
        )
        .tensor(
            "blk.0.attn_q.weight",
            vec![32, 2],
            GgmlType::Q4_0,
            vec![7; 36],
        )
        .tensor("blk.0.ffn.weight", vec![256], GgmlType::Q4_K, vec![9; 144])
        .tensor("mystery", vec![3, 3], GgmlType::Unknown(999), vec![1, 2, 3])
}

fn header(version: u32, n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&n_tensors.to_le_bytes());
    b.extend_from_slice(&n_kv.to_le_bytes());
    b
}

fn push_str(b: &mut Vec<u8>, s: &[u8]) {
    b.extend_from_slice(&(s.len() as u64).to_le_bytes());
    b.extend_from_slice(s);
}

/// A file with one key `k` whose value is `ty` followed by `value_bytes`.
fn one_kv(ty: u32, value_bytes: &[u8]) -> Vec<u8> {
    let mut b = header(3, 0, 1);
    push_str(&mut b, b"k");
    b.extend_from_slice(&ty.to_le_bytes());
    b.extend_from_slice(value_bytes);
    b
}

fn parse_all(bytes: &[u8]) -> Result<GgufFile, GgufError> {
    parse(bytes, Some(bytes.len() as u64))
}

fn invalid_reason(result: Result<GgufFile, GgufError>) -> String {
    match result {
        Err(GgufError::Invalid { reason, .. }) => reason,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

/// Where the `u64` offset field of tensor `name` (with `n_dims` dims) lies in `bytes`.
fn offset_field(bytes: &[u8], name: &str, n_dims: usize) -> usize {
    let at = bytes
        .windows(name.len())
        .position(|w| w == name.as_bytes())
        .expect("tensor name present");
    at + name.len() + 4 + 8 * n_dims + 4
}

#[test]
fn round_trip_all_value_types_v2_and_v3() {
    for version in [2, 3] {
        let builder = sample(version);
        let bytes = builder.to_bytes();
        let file = parse_all(&bytes).expect("sample parses");
        assert_eq!(file.version, version);
        assert_eq!(
            file.metadata, builder.metadata,
            "metadata round-trips in order"
        );
        assert_eq!(file.alignment, 32);
        assert_eq!(file.data_offset % 32, 0);
        assert_eq!(file.tensors.len(), builder.tensors.len());
        for (info, t) in file.tensors.iter().zip(&builder.tensors) {
            assert_eq!(
                (&info.name, &info.dims, info.ggml_type),
                (&t.name, &t.dims, t.ggml_type)
            );
            assert_eq!(info.offset % 32, 0);
            let start = (file.data_offset + info.offset) as usize;
            assert_eq!(
                &bytes[start..start + t.data.len()],
                &t.data[..],
                "{} data is where the info says",
                t.name
            );
        }
        assert_eq!(file.tensors[3].ggml_type, GgmlType::Unknown(999));
        assert_eq!(file.tensors[3].n_bytes(), None);
    }
}

#[test]
fn custom_alignment_is_used() {
    let bytes = sample(3).kv("general.alignment", 64u32).to_bytes();
    let file = parse_all(&bytes).expect("parses");
    assert_eq!(file.alignment, 64);
    assert_eq!(file.data_offset % 64, 0);
    assert!(file.tensors.iter().all(|t| t.offset % 64 == 0));
    assert_eq!(
        file.tensors[1].offset, 64,
        "the 32-byte F32 tensor is padded to 64"
    );
}

#[test]
fn helpers_read_the_usual_keys() {
    let file = parse_all(&sample(3).to_bytes()).expect("parses");
    assert_eq!(file.architecture(), Some("llama"));
    assert_eq!(file.context_length(), Some(8192));
    assert_eq!(file.embedding_length(), Some(576));
    assert_eq!(file.block_count(), Some(30), "an i32 is accepted");
    assert_eq!(file.file_type(), Some(15));
    assert_eq!(file.quantization_label(), Some("Q4_K_M"));
    assert!(file
        .chat_template()
        .is_some_and(|t| t.starts_with("{% for")));
    assert_eq!(
        file.get_u64("t.i8"),
        None,
        "negative integers do not fit in u64"
    );
    assert_eq!(file.get_u64("t.u64"), Some(u64::MAX));
    assert_eq!(file.get_u64("t.f32"), None, "floats are not integers");
    assert_eq!(file.get_str("t.u8"), None);
    assert_eq!(file.get("missing"), None);
    assert_eq!(file.parameter_count(), 8 + 64 + 256 + 9);
    let tensor = &file.tensors[1];
    assert_eq!(
        (tensor.n_elements(), tensor.n_bytes()),
        (Some(64), Some(36))
    );
}

#[test]
fn quantization_labels_follow_llama_ftype() {
    let label = |ftype: u32| {
        parse_all(
            &GgufBuilder::new(3)
                .kv("general.file_type", ftype)
                .to_bytes(),
        )
        .expect("parses")
        .quantization_label()
    };
    let expected = [
        (0, "F32"),
        (1, "F16"),
        (2, "Q4_0"),
        (3, "Q4_1"),
        (7, "Q8_0"),
        (14, "Q4_K_S"),
        (17, "Q5_K_M"),
        (18, "Q6_K"),
        (32, "BF16"),
    ];
    for (ftype, name) in expected {
        assert_eq!(label(ftype), Some(name), "file_type {ftype}");
    }
    assert_eq!(label(5), None, "removed types have no label");
    assert_eq!(label(1000), None);
}

#[test]
fn values_display_as_short_summaries() {
    assert_eq!(Value::U32(7).to_string(), "7");
    assert_eq!(Value::from("a\"b\n").to_string(), r#""a\"b\n""#);
    assert_eq!(
        Value::Array(Array::String(vec!["x".into(); 49152])).to_string(),
        "[49152 × string]"
    );
    assert_eq!(
        Value::Array(Array::Array(vec![])).to_string(),
        "[0 × array]"
    );
    assert_eq!(Value::from("abcdefgh").summary(5), "\"abc…");
    assert_eq!(Value::from("ab").summary(5), "\"ab\"");
    assert_eq!(Value::I64(-3).type_name(), "i64");
    assert_eq!(GgmlType::Q4_K.to_string(), "Q4_K");
    assert_eq!(GgmlType::from_id(77).to_string(), "unknown ggml type 77");
    assert_eq!(GgmlType::from_id(GgmlType::MXFP4.id()), GgmlType::MXFP4);
}

#[test]
fn read_file_matches_parse_and_names_the_path_on_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sample.gguf");
    let builder = sample(3);
    builder.write(&path).expect("write");
    let bytes = builder.to_bytes();
    assert_eq!(
        read_file(&path).expect("reads"),
        parse_all(&bytes).expect("parses")
    );

    let missing = dir.path().join("missing.gguf");
    let err = read_file(&missing).expect_err("missing file");
    assert!(matches!(err, GgufError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.gguf"), "{err}");
}

#[test]
fn rejects_bad_magic_and_short_inputs() {
    assert!(
        matches!(parse(b"GGML\x03\0\0\0", None), Err(GgufError::NotGguf { magic }) if &magic == b"GGML")
    );
    assert!(matches!(
        parse(b"{\"", None),
        Err(GgufError::NotGguf { .. })
    ));
    assert!(matches!(
        parse(b"", None),
        Err(GgufError::Truncated {
            offset: 0,
            needed: 4
        })
    ));
    assert!(matches!(
        parse(b"GG", None),
        Err(GgufError::Truncated {
            offset: 2,
            needed: 2
        })
    ));
    let err = parse(b"PK\x03\x04 zip", None).expect_err("not gguf");
    assert!(err.to_string().starts_with("not a GGUF file"), "{err}");
}

#[test]
fn rejects_version_1_and_unknown_versions() {
    for version in [0, 1, 4, 0x0300_0000] {
        let bytes = GgufBuilder::new(version).kv(KEY, "llama").to_bytes();
        let err = parse_all(&bytes).expect_err("unsupported");
        assert!(
            matches!(err, GgufError::UnsupportedVersion(v) if v == version),
            "{err:?}"
        );
    }
    let err = parse_all(&header(1, 0, 0)).expect_err("v1");
    assert_eq!(
        err.to_string(),
        "unsupported GGUF version 1: only versions 2 and 3 are supported"
    );
}

#[test]
fn truncation_at_every_offset_is_an_error() {
    let bytes = sample(3).to_bytes();
    let full = parse_all(&bytes).expect("parses");
    // Metadata ends where the first prefix parses when tensor bounds are not checked.
    let info_end = (0..=bytes.len())
        .find(|&cut| parse(&bytes[..cut], None).is_ok())
        .expect("the whole file parses");
    assert!(info_end as u64 <= full.data_offset && full.data_offset - (info_end as u64) < 32);
    let last_tensor_end = full
        .tensors
        .iter()
        .filter_map(|t| Some(full.data_offset + t.offset + t.n_bytes()?))
        .max()
        .expect("tensors");
    for cut in 0..bytes.len() {
        let prefix = &bytes[..cut];
        let known_len = parse(prefix, Some(cut as u64));
        if cut < info_end {
            for result in [
                parse(prefix, None),
                known_len,
                parse(prefix, Some(bytes.len() as u64)),
            ] {
                assert!(
                    matches!(result, Err(GgufError::Truncated { .. })),
                    "cut at {cut}: {result:?}"
                );
            }
        } else {
            assert_eq!(
                known_len.is_ok(),
                cut as u64 >= last_tensor_end,
                "cut at {cut}: {known_len:?}"
            );
            if let Err(e) = known_len {
                assert!(
                    matches!(e, GgufError::TensorOutOfBounds { .. }),
                    "cut at {cut}: {e:?}"
                );
            }
        }
    }
}

#[test]
fn huge_declared_sizes_fail_fast() {
    let started = Instant::now();
    let max = u64::MAX.to_le_bytes();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("kv count", header(3, 0, u64::MAX)),
        ("tensor count", header(3, u64::MAX, 0)),
        ("both counts", header(3, u64::MAX / 2, u64::MAX / 2)),
        ("key length", [header(3, 0, 1), max.to_vec()].concat()),
        ("string value", one_kv(type_id::STRING, &max)),
        (
            "u8 array",
            one_kv(
                type_id::ARRAY,
                &[&type_id::U8.to_le_bytes()[..], &max].concat(),
            ),
        ),
        (
            "string array",
            one_kv(
                type_id::ARRAY,
                &[&type_id::STRING.to_le_bytes()[..], &max].concat(),
            ),
        ),
        (
            "array of arrays",
            one_kv(
                type_id::ARRAY,
                &[&type_id::ARRAY.to_le_bytes()[..], &max].concat(),
            ),
        ),
        (
            "f64 array",
            one_kv(
                type_id::ARRAY,
                &[
                    &type_id::F64.to_le_bytes()[..],
                    &(u64::MAX / 8 + 1).to_le_bytes(),
                ]
                .concat(),
            ),
        ),
    ];
    for (what, bytes) in cases {
        let result = parse_all(&bytes);
        assert!(
            matches!(
                result,
                Err(GgufError::Truncated { .. }) | Err(GgufError::Invalid { .. })
            ),
            "{what}: {result:?}"
        );
    }
    let mut n_dims = header(3, 1, 0);
    push_str(&mut n_dims, b"t");
    n_dims.extend_from_slice(&u32::MAX.to_le_bytes());
    n_dims.extend_from_slice(&[0; 64]);
    assert!(invalid_reason(parse_all(&n_dims)).contains("dimensions"));
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// Counts that the file's length allows but its bytes do not back must not be reserved up
/// front: here 8 billion strings (192 GB as `Vec<String>`) in a sparse 64 GiB file.
#[test]
fn counts_backed_only_by_file_length_do_not_preallocate() {
    let n_strings: u64 = 8_000_000_000;
    let mut bytes = one_kv(
        type_id::ARRAY,
        &[&type_id::STRING.to_le_bytes()[..], &n_strings.to_le_bytes()].concat(),
    );
    push_str(&mut bytes, b"ok");
    push_str(&mut bytes, &[0xff, 0xfe]);
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), &bytes).expect("write");
    file.as_file()
        .set_len(64 << 30)
        .expect("sparse 64 GiB file");
    assert!(invalid_reason(read_file(file.path())).contains("not valid UTF-8"));
}

#[test]
fn rejects_bad_alignment() {
    for bad in [0u32, 3, 48] {
        let bytes = sample(3).kv("general.alignment", bad).to_bytes();
        assert!(
            invalid_reason(parse_all(&bytes)).contains("power of two"),
            "alignment {bad}"
        );
    }
    let bytes = sample(3).kv("general.alignment", 32u64).to_bytes();
    assert!(invalid_reason(parse_all(&bytes)).contains("not a u32"));
}

#[test]
fn rejects_misaligned_and_out_of_bounds_tensors() {
    let builder = GgufBuilder::new(3)
        .tensor("first", vec![8], GgmlType::F32, vec![0; 32])
        .tensor("second", vec![16], GgmlType::F32, vec![0; 64]);
    let bytes = builder.to_bytes();
    let field = offset_field(&bytes, "second", 1);
    assert_eq!(bytes[field..field + 8], 32u64.to_le_bytes());

    let mut misaligned = bytes.clone();
    misaligned[field..field + 8].copy_from_slice(&33u64.to_le_bytes());
    assert!(invalid_reason(parse_all(&misaligned)).contains("not a multiple of the alignment"));

    let mut overflowing = bytes.clone();
    overflowing[field..field + 8].copy_from_slice(&(u64::MAX - 31).to_le_bytes());
    assert!(
        matches!(parse_all(&overflowing), Err(GgufError::TensorOutOfBounds { ref name, .. }) if name == "second")
    );

    let cut = &bytes[..bytes.len() - 1];
    let err = parse_all(cut).expect_err("the second tensor runs past the end");
    assert!(
        matches!(err, GgufError::TensorOutOfBounds { ref name, n_bytes: 64, .. } if name == "second"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("tensor 'second' (64 bytes at offset "),
        "{err}"
    );
    assert!(
        parse(cut, None).is_ok(),
        "without a file length, bounds are not checked"
    );
}

#[test]
fn rejects_malformed_tensor_infos() {
    let partial_block = GgufBuilder::new(3)
        .tensor("q", vec![7, 32], GgmlType::Q4_0, vec![])
        .to_bytes();
    assert!(invalid_reason(parse_all(&partial_block)).contains("whole 32-element blocks"));
    let overflow = GgufBuilder::new(3)
        .tensor(
            "big",
            vec![1 << 32, 1 << 32],
            GgmlType::Unknown(500),
            vec![],
        )
        .to_bytes();
    assert!(invalid_reason(parse_all(&overflow)).contains("more elements than fit"));
    let too_many = GgufBuilder::new(3)
        .tensor("a", vec![1 << 40, 1 << 23], GgmlType::I8, vec![])
        .tensor("b", vec![1 << 40, 1 << 23], GgmlType::Unknown(500), vec![]);
    assert!(invalid_reason(parse(&too_many.to_bytes(), None)).contains("2^64 elements in all"));
    let nine_dims = GgufBuilder::new(3)
        .tensor("t", vec![1; 9], GgmlType::F32, vec![0; 4])
        .to_bytes();
    assert!(invalid_reason(parse_all(&nine_dims)).contains("9 dimensions"));
    let eight_dims = GgufBuilder::new(3)
        .tensor("t", vec![1; 8], GgmlType::F32, vec![0; 4])
        .to_bytes();
    assert!(parse_all(&eight_dims).is_ok());
    let duplicate = GgufBuilder::new(3)
        .tensor("t", vec![1], GgmlType::F32, vec![0; 4])
        .tensor("t", vec![1], GgmlType::F32, vec![0; 4]);
    assert!(invalid_reason(parse_all(&duplicate.to_bytes())).contains("duplicate tensor name"));
}

#[test]
fn rejects_malformed_values() {
    assert!(invalid_reason(parse_all(&one_kv(13, &[0; 8]))).contains("unknown value type 13"));
    let bad_elem = one_kv(
        type_id::ARRAY,
        &[&99u32.to_le_bytes()[..], &0u64.to_le_bytes()].concat(),
    );
    assert!(invalid_reason(parse_all(&bad_elem)).contains("unknown array element type 99"));
    assert!(invalid_reason(parse_all(&one_kv(type_id::BOOL, &[2]))).contains("not 0 or 1"));
    let mut bad_key = header(3, 0, 1);
    push_str(&mut bad_key, &[0xc3, 0x28]);
    bad_key.extend_from_slice(&type_id::U8.to_le_bytes());
    bad_key.push(0);
    assert!(invalid_reason(parse_all(&bad_key)).contains("metadata key is not valid UTF-8"));
    let mut long_key = header(3, 0, 1);
    push_str(&mut long_key, &[b'k'; 64 * 1024 + 1]);
    assert!(invalid_reason(parse_all(&long_key)).contains("over the limit"));
    let duplicate = GgufBuilder::new(3).kv(KEY, "a").kv(KEY, "b").to_bytes();
    assert!(invalid_reason(parse_all(&duplicate)).contains("duplicate metadata key"));
}

#[test]
fn arrays_nest_at_most_eight_deep() {
    let nest =
        |depth: usize| (1..depth).fold(Array::U8(vec![1]), |inner, _| Array::Array(vec![inner]));
    let ok = GgufBuilder::new(3).kv("deep", nest(8)).to_bytes();
    assert_eq!(
        parse_all(&ok).expect("8 levels").get("deep"),
        Some(&Value::Array(nest(8)))
    );
    let too_deep = GgufBuilder::new(3).kv("deep", nest(9)).to_bytes();
    assert!(invalid_reason(parse_all(&too_deep)).contains("deeper than 8"));
}

#[test]
fn error_messages_are_one_line() {
    let errors = [
        parse(b"nope", None),
        parse(&header(1, 0, 0), None),
        parse(b"GGUF", None),
        parse(&one_kv(13, &[]), None),
        parse_all(
            &GgufBuilder::new(3)
                .tensor("t", vec![8], GgmlType::F32, vec![0; 32])
                .to_bytes()[..40],
        ),
    ];
    for result in errors {
        let message = result.expect_err("error").to_string();
        assert!(
            !message.contains('\n') && !message.is_empty(),
            "{message:?}"
        );
    }
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/gguf_parse")
}

/// The fuzz corpus seeds, by file name; `regenerate_fuzz_corpus` writes them.
fn corpus_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let llama = GgufBuilder::new(2)
        .kv(KEY, "llama")
        .kv("llama.context_length", 2048u32)
        .kv("general.file_type", 2u32)
        .kv(
            "tokenizer.ggml.tokens",
            Array::String(vec!["<unk>".into(), "<s>".into(), "a".into()]),
        )
        .kv("tokenizer.ggml.scores", Array::F32(vec![0.0, -1.0, -2.0]))
        .kv("tokenizer.chat_template", "{{ messages[0].content }}")
        .tensor("token_embd.weight", vec![4, 3], GgmlType::F32, vec![0; 48])
        .tensor("output.weight", vec![32, 1], GgmlType::Q4_0, vec![0; 18]);
    let aligned = GgufBuilder::new(3)
        .kv("general.alignment", 64u32)
        .tensor("k", vec![256], GgmlType::Q4_K, vec![1; 144])
        .tensor("u", vec![5], GgmlType::Unknown(200), vec![2; 5]);
    vec![
        ("empty_v3.gguf", GgufBuilder::new(3).to_bytes()),
        (
            "all_values_v3.gguf",
            GgufBuilder {
                tensors: Vec::new(),
                ..sample(3)
            }
            .to_bytes(),
        ),
        ("llama_like_v2.gguf", llama.to_bytes()),
        ("aligned_tensors_v3.gguf", aligned.to_bytes()),
    ]
}

/// Rewrites the fuzz seeds: `cargo test -p hyperllama-models regenerate_fuzz_corpus -- --ignored`.
#[test]
#[ignore = "writes into the source tree; run by hand after changing the seeds"]
fn regenerate_fuzz_corpus() {
    std::fs::create_dir_all(corpus_dir()).expect("corpus dir");
    for (name, bytes) in corpus_seeds() {
        assert!(bytes.len() < 4096, "{name} is {} bytes", bytes.len());
        std::fs::write(corpus_dir().join(name), bytes).expect("write seed");
    }
}

#[test]
fn fuzz_corpus_parses_without_panicking() {
    let entries = std::fs::read_dir(corpus_dir()).expect("fuzz corpus dir exists");
    let mut n_files = 0;
    for entry in entries {
        let path = entry.expect("dir entry").path();
        let bytes = std::fs::read(&path).expect("read corpus file");
        let _ = parse(&bytes, Some(bytes.len() as u64));
        let _ = parse(&bytes, None);
        n_files += 1;
    }
    assert!(
        n_files >= corpus_seeds().len(),
        "the corpus holds {n_files} files"
    );
    for (name, bytes) in corpus_seeds() {
        assert!(parse_all(&bytes).is_ok(), "seed {name} is a valid file");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mutated_files_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..12),
        cut in any::<prop::sample::Index>(),
        claimed_len in any::<u64>(),
    ) {
        let mut bytes = sample(3).to_bytes();
        for (at, byte) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *byte;
        }
        let _ = parse(&bytes, Some(bytes.len() as u64));
        let _ = parse(&bytes, Some(claimed_len));
        let _ = parse(&bytes[..cut.index(bytes.len() + 1)], None);
    }

    #[test]
    fn random_bodies_after_a_valid_header_never_panic(
        n_tensors in 0u64..4,
        n_kv in 0u64..4,
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let bytes = [header(3, n_tensors, n_kv), body].concat();
        let _ = parse(&bytes, Some(bytes.len() as u64));
    }
}

fn test_models_dir() -> PathBuf {
    match std::env::var_os("HYPERLLAMA_TEST_MODELS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
            .join(".cache/hyperllama/test-models"),
    }
}

fn read_test_model(name: &str) -> GgufFile {
    let path = test_models_dir().join(name);
    assert!(
        path.is_file(),
        "test model {} is missing: run scripts/fetch-models.sh",
        path.display()
    );
    read_file(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn n_tokens(file: &GgufFile) -> Option<usize> {
    file.get("tokenizer.ggml.tokens")?
        .as_array()
        .map(Array::len)
}

#[test]
fn reads_real_models() {
    let smol = read_test_model("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(smol.architecture(), Some("llama"));
    assert_eq!(smol.context_length(), Some(8192));
    assert_eq!(smol.embedding_length(), Some(576));
    assert_eq!(smol.block_count(), Some(30));
    assert_eq!(n_tokens(&smol), Some(49152));
    assert_eq!(
        (smol.file_type(), smol.quantization_label()),
        (Some(3), Some("Q4_1"))
    );
    assert!(smol.chat_template().is_some_and(|t| t.contains("im_start")));
    assert!(
        (100_000_000..200_000_000).contains(&smol.parameter_count()),
        "{}",
        smol.parameter_count()
    );

    let gemma = read_test_model("gemma-3-270m-q4_k_m.gguf");
    assert_eq!(gemma.architecture(), Some("gemma3"));
    assert_eq!(gemma.context_length(), Some(32768));
    assert_eq!(gemma.embedding_length(), Some(640));
    assert_eq!(
        (gemma.file_type(), gemma.quantization_label()),
        (Some(15), Some("Q4_K_M"))
    );
    assert_eq!(n_tokens(&gemma), Some(262_144));
    assert!(
        (200_000_000..350_000_000).contains(&gemma.parameter_count()),
        "{}",
        gemma.parameter_count()
    );
    for file in [&smol, &gemma] {
        assert!(
            file.tensors.iter().all(|t| t.ggml_type.name().is_some()),
            "all ggml types are known"
        );
    }
}
