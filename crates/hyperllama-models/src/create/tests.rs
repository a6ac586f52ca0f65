use std::path::{Path, PathBuf};

use super::*;
use crate::gguf::{GgmlType, GgufBuilder};
use crate::reference::ModelReference;
use crate::resolve::{resolve_model, TemplateChoice};

/// A small GGUF model: llama, Q4_K_M file type, one 64×32 F32 tensor.
fn tiny_gguf() -> Vec<u8> {
    GgufBuilder::new(3)
        .kv("general.architecture", "llama")
        .kv("general.file_type", 15u32)
        .kv("llama.context_length", 2048u32)
        .kv("llama.embedding_length", 64u32)
        .kv(
            "tokenizer.chat_template",
            "{% for m in messages %}{{ m.content }}{% endfor %}",
        )
        .tensor(
            "token_embd.weight",
            vec![64, 32],
            GgmlType::F32,
            vec![0; 64 * 32 * 4],
        )
        .to_bytes()
}

struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("models")).expect("store");
    std::fs::write(dir.path().join("model.gguf"), tiny_gguf()).expect("gguf written");
    Fixture { dir, store }
}

fn name(s: &str) -> ModelName {
    ModelName::parse(s).expect("valid name")
}

/// Creates `model` from `text`, collecting the progress statuses.
fn create(
    f: &Fixture,
    model: &str,
    text: &str,
) -> Result<(StoredManifest, Vec<String>), CreateError> {
    let modelfile = Modelfile::parse(text).expect("valid Modelfile");
    let mut statuses = Vec::new();
    let stored = create_model(&f.store, &name(model), &modelfile, f.dir.path(), &mut |e| {
        statuses.push(e.status())
    })?;
    Ok((stored, statuses))
}

fn blob_count(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("models/blobs"))
        .expect("blobs dir")
        .count()
}

#[test]
fn creates_from_a_relative_gguf_path_with_ollamas_progress() {
    let f = fixture();
    let (stored, statuses) = create(
        &f,
        "tiny",
        "FROM ./model.gguf\nPARAMETER temperature 0.5\nPARAMETER stop <end>\nSYSTEM Be brief.\n\
         TEMPLATE {{ .Prompt }}\nLICENSE MIT\nMESSAGE user hi\nMESSAGE assistant hello\n",
    )
    .expect("created");
    let weights = stored.manifest.model_layer().expect("model layer").digest;
    assert_eq!(statuses[0], "gathering model components");
    assert_eq!(statuses[1], format!("copying file {weights} 100%"));
    assert!(statuses.contains(&"parsing GGUF".to_owned()));
    assert!(statuses.contains(&format!("using existing layer {weights}")));
    assert_eq!(
        statuses
            .iter()
            .filter(|s| s.starts_with("creating new layer"))
            .count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses[statuses.len() - 2..],
        ["writing manifest", "success"]
    );

    let config = read_config(&f.store, &stored.manifest).expect("config readable");
    assert_eq!(config.model_format, "gguf");
    assert_eq!(config.model_family, "llama");
    assert_eq!(config.file_type, "Q4_K_M");
    assert_eq!(config.model_type, "2K");

    let model = resolve_model(&f.store, &name("tiny")).expect("resolved");
    assert_eq!(model.system.as_deref(), Some("Be brief."));
    assert_eq!(model.licenses, ["MIT"]);
    assert_eq!(model.messages.len(), 2);
    assert_eq!(model.template.as_deref(), Some("{{ .Prompt }}"));
    assert_eq!(model.chat_template(), TemplateChoice::FromGguf);
    let options = model.options();
    assert_eq!(options.temperature, Some(0.5));
    assert_eq!(options.stop, ["<end>"]);
}

#[test]
fn a_second_create_reuses_every_blob() {
    let f = fixture();
    create(&f, "a", "FROM model.gguf\nSYSTEM x\n").expect("created");
    let n_blobs = blob_count(f.dir.path());
    let (_, statuses) = create(&f, "b", "FROM model.gguf\nSYSTEM x\n").expect("created");
    assert!(
        !statuses.iter().any(|s| s.starts_with("copying file")),
        "{statuses:?}"
    );
    assert!(
        !statuses.iter().any(|s| s.starts_with("creating new layer")),
        "{statuses:?}"
    );
    assert_eq!(blob_count(f.dir.path()), n_blobs);
}

#[test]
fn from_a_model_inherits_and_merges() {
    let f = fixture();
    create(
        &f,
        "base",
        "FROM model.gguf\nPARAMETER temperature 0.5\nPARAMETER top_k 7\nSYSTEM old\nLICENSE one\n",
    )
    .expect("base created");
    let (stored, _) = create(
        &f,
        "child",
        "FROM base\nPARAMETER temperature 0.1\nSYSTEM new\nLICENSE two\n\
         TEMPLATE \"{% for m in messages %}{{ m.content }}{% endfor %}\"\n",
    )
    .expect("child created");
    assert!(stored
        .manifest
        .layers
        .iter()
        .any(|l| l.from == "base:latest"));
    let child = resolve_model(&f.store, &name("child")).expect("resolved");
    let options = child.options();
    assert_eq!(options.temperature, Some(0.1), "the Modelfile wins");
    assert_eq!(options.top_k, Some(7), "the base's parameter is kept");
    assert_eq!(child.system.as_deref(), Some("new"));
    assert_eq!(child.licenses, ["one", "two"]);
    assert!(matches!(child.chat_template(), TemplateChoice::Jinja(_)));
    let base = resolve_model(&f.store, &name("base")).expect("resolved");
    assert_eq!(base.model_path, child.model_path, "weights shared");
}

#[test]
fn bad_inputs_leave_nothing_visible() {
    let f = fixture();
    std::fs::write(f.dir.path().join("corrupt.gguf"), b"GGUF\x03\0\0\0garbage").expect("written");
    let cases = [
        ("FROM missing.gguf\n", "FROM file"),
        ("FROM ./nowhere/x\n", "not found"),
        ("FROM corrupt.gguf\n", "not a valid GGUF file"),
        (
            "FROM nosuchmodel\n",
            "base model 'nosuchmodel:latest' not found",
        ),
        ("FROM model.gguf\nADAPTER missing.gguf\n", "ADAPTER file"),
    ];
    for (text, needle) in cases {
        let err = create(&f, "x", text).expect_err("refused");
        assert!(err.to_string().contains(needle), "{text}: {err}");
    }
    assert!(f.store.manifest_names().expect("listed").is_empty());
    // Only the valid model.gguf of the ADAPTER case was copied; no temporary file is left.
    let names: Vec<String> = std::fs::read_dir(f.dir.path().join("models/blobs"))
        .expect("blobs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n.starts_with("sha256-")), "{names:?}");
    assert!(names.len() <= 1, "{names:?}");
}

#[test]
fn draft_from_a_model_uses_its_weights() {
    let f = fixture();
    create(&f, "small", "FROM model.gguf\n").expect("created");
    let (stored, _) = create(&f, "big", "FROM model.gguf\nDRAFT small\n").expect("created");
    let draft = stored
        .manifest
        .layer(media_type::DRAFT)
        .expect("draft layer");
    assert_eq!(
        Some(draft.digest),
        stored.manifest.model_layer().map(|l| l.digest)
    );
}

#[test]
fn parameter_sizes_read_like_ollamas() {
    assert_eq!(parameter_size_label(134_515_008), "134.52M");
    assert_eq!(parameter_size_label(8_030_261_248), "8.0B");
    assert_eq!(parameter_size_label(7_000_000_000), "7B");
    assert_eq!(parameter_size_label(2048), "2K");
    assert_eq!(parameter_size_label(999), "999");
}

/// A tiny GGUF with a token table.
fn gguf_with_tokens(tokens: &[&str]) -> Vec<u8> {
    GgufBuilder::new(3)
        .kv("general.architecture", "llama")
        .kv(
            "tokenizer.ggml.tokens",
            gguf::Value::Array(gguf::Array::String(
                tokens.iter().map(|t| (*t).to_owned()).collect(),
            )),
        )
        .kv("tokenizer.ggml.bos_token_id", 0u32)
        .tensor("token_embd.weight", vec![4, 4], GgmlType::F32, vec![0; 64])
        .to_bytes()
}

#[test]
fn a_draft_with_another_vocabulary_is_refused_before_anything_is_copied() {
    let f = fixture();
    let write = |name: &str, tokens: &[&str]| {
        std::fs::write(f.dir.path().join(name), gguf_with_tokens(tokens)).expect("written");
    };
    write("target.gguf", &["<s>", "a", "b"]);
    write("same.gguf", &["<s>", "a", "b"]);
    write("longer.gguf", &["<s>", "a", "b", "c"]);
    write("other.gguf", &["<s>", "a", "x"]);

    create(&f, "ok", "FROM target.gguf\nDRAFT same.gguf\n").expect("same vocabulary");
    let before = blob_count(f.dir.path());
    let err = create(&f, "bad", "FROM target.gguf\nDRAFT longer.gguf\n").expect_err("refused");
    let msg = err.to_string();
    assert!(matches!(err, CreateError::DraftVocabulary { .. }), "{msg}");
    assert!(
        msg.contains("longer.gguf") && msg.contains("target.gguf"),
        "{msg}"
    );
    assert!(msg.contains("4 tokens, the model's 3"), "{msg}");
    let err = create(&f, "bad", "FROM target.gguf\nDRAFT other.gguf\n").expect_err("refused");
    assert!(err.to_string().contains("token 2"), "{err}");
    assert_eq!(blob_count(f.dir.path()), before, "nothing copied");

    // A draft named by model: its weights are checked the same way.
    create(&f, "other", "FROM other.gguf\n").expect("created");
    let err = create(&f, "bad", "FROM ok\nDRAFT other\n").expect_err("refused");
    assert!(matches!(err, CreateError::DraftVocabulary { .. }), "{err}");
}

/// A Hugging Face checkout in `dir/name`: config.json and one small valid safetensors file.
fn safetensors_folder(dir: &Path, name: &str) -> PathBuf {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).expect("folder");
    std::fs::write(
        folder.join("config.json"),
        r#"{"model_type":"llama","max_position_embeddings":2048,"hidden_size":64}"#,
    )
    .expect("config written");
    let header = br#"{"w":{"dtype":"BF16","shape":[64,32],"data_offsets":[0,4096]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.resize(bytes.len() + 4096, 0);
    std::fs::write(folder.join("model.safetensors"), bytes).expect("safetensors written");
    folder
}

#[test]
fn a_safetensors_folder_becomes_a_reference_layer() {
    let f = fixture();
    let folder = safetensors_folder(f.dir.path(), "checkout");
    let (stored, _) =
        create(&f, "st", "FROM checkout\nSYSTEM Be brief.\n").expect("created from a folder");
    let layer = stored
        .manifest
        .reference_layer()
        .expect("a reference layer");
    assert_eq!(
        layer.media_type,
        "application/vnd.hyperllama.model.reference"
    );
    assert!(stored.manifest.model_layer().is_none());
    let resolved = resolve_model(&f.store, &name("st")).expect("resolves");
    let canonical = std::fs::canonicalize(&folder).expect("canonical");
    assert_eq!(
        resolved.reference,
        Some(ModelReference::Safetensors {
            path: canonical.clone(),
            size: std::fs::metadata(folder.join("model.safetensors"))
                .expect("meta")
                .len(),
            parameter_count: 2048,
        })
    );
    assert_eq!(resolved.format(), "safetensors");
    let config = resolved.config.clone().expect("config");
    assert_eq!(config.model_format, "safetensors");
    assert_eq!(config.model_family, "llama");
    assert_eq!(config.model_type, "2K");
    assert_eq!(config.file_type, "BF16");
    assert_eq!(config.context_length, 2048);
    // The Modelfile names the folder again, absolute.
    let modelfile = resolved.to_modelfile("hyperllama");
    assert!(
        modelfile.contains(&format!("FROM {}\n", canonical.display())),
        "{modelfile}"
    );
    // A model made FROM it keeps the reference.
    let (derived, _) = create(&f, "st2", "FROM st\nPARAMETER temperature 0.2\n").expect("derived");
    assert_eq!(
        derived.manifest.reference_layer().map(|l| l.digest),
        Some(layer.digest)
    );
    // The folder is referenced, not copied: the store holds only small blobs.
    let largest = std::fs::read_dir(f.dir.path().join("models/blobs"))
        .expect("blobs")
        .map(|e| e.expect("entry").metadata().expect("meta").len())
        .max()
        .unwrap_or(0);
    assert!(largest < 1024, "{largest}");
}

#[test]
fn a_hugging_face_id_becomes_a_reference_layer() {
    let f = fixture();
    create(&f, "hfm", "FROM hf:HuggingFaceTB/SmolLM2-135M-Instruct\n").expect("created");
    let resolved = resolve_model(&f.store, &name("hfm")).expect("resolves");
    assert_eq!(
        resolved.reference,
        Some(ModelReference::HuggingFace {
            id: "HuggingFaceTB/SmolLM2-135M-Instruct".into()
        })
    );
    assert_eq!(resolved.format(), "huggingface");
    assert_eq!(
        resolved.config.as_ref().expect("config").model_format,
        "huggingface"
    );
    assert!(resolved
        .to_modelfile("hyperllama")
        .contains("FROM hf:HuggingFaceTB/SmolLM2-135M-Instruct\n"));
}

#[test]
fn bad_folders_and_ids_are_refused_with_the_reason() {
    let f = fixture();
    std::fs::create_dir(f.dir.path().join("empty")).expect("dir");
    let no_weights = f.dir.path().join("noweights");
    std::fs::create_dir(&no_weights).expect("dir");
    std::fs::write(no_weights.join("config.json"), "{}").expect("written");
    safetensors_folder(f.dir.path(), "ok");
    let cases = [
        ("FROM empty\n", "has no config.json"),
        ("FROM noweights\n", "has no *.safetensors file"),
        ("FROM hf:justaname\n", "is not a Hugging Face id"),
        ("FROM model.gguf\nDRAFT ok\n", "a draft must be GGUF"),
        ("FROM model.gguf\nADAPTER ok\n", "is a directory"),
    ];
    for (text, needle) in cases {
        let err = create(&f, "x", text).expect_err("refused");
        assert!(err.to_string().contains(needle), "{text}: {err}");
    }
    assert!(f.store.manifest_names().expect("listed").is_empty());
}
