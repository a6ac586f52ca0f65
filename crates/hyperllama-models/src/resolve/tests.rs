use super::*;
use crate::manifest::{Layer, CONFIG_MEDIA_TYPE};

fn put(store: &Store, media: &str, bytes: &[u8]) -> Layer {
    let blob = store
        .write_blob_from_reader(&mut &bytes[..], None)
        .expect("blob written");
    Layer::new(media, blob.digest, blob.size)
}

#[test]
fn reads_layers_as_ollama_writes_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    let layers = vec![
        put(&store, media_type::MODEL, b"weights"),
        put(&store, media_type::TEMPLATE, b"{{ .System }} {{ .Prompt }}"),
        put(&store, media_type::SYSTEM, b"sys"),
        put(
            &store,
            media_type::PARAMS,
            br#"{"num_ctx":512,"seed":-1,"stop":["a","b"],"temperature":"hot","top_k":40}"#,
        ),
        put(
            &store,
            media_type::MESSAGES,
            br#"[{"role":"user","content":"hi","images":null}]"#,
        ),
        put(&store, media_type::LICENSE, b"L1"),
        put(&store, media_type::LICENSE, b"L2"),
    ];
    let config = put(&store, CONFIG_MEDIA_TYPE, b"{}");
    let name = ModelName::parse("hf.co/u/r:Q4").expect("valid");
    store
        .write_manifest(&name, &Manifest::new(config, layers))
        .expect("manifest");

    let lower = ModelName::parse("HF.CO/U/R:q4").expect("valid");
    let model = resolve_model(&store, &lower).expect("resolved ignoring case");
    assert_eq!(model.name, name);
    assert_eq!(model.system.as_deref(), Some("sys"));
    assert_eq!(model.licenses, ["L1", "L2"]);
    assert_eq!(model.messages[0].content, "hi");
    assert_eq!(model.chat_template(), TemplateChoice::FromGguf);
    let o = model.options();
    assert_eq!(o.num_ctx, Some(512));
    assert_eq!(o.seed, Some(-1));
    assert_eq!(o.stop, ["a", "b"]);
    assert_eq!(o.top_k, Some(40));
    assert_eq!(o.temperature, None, "a value of the wrong type is ignored");
    let text = model.to_modelfile("hyperllama");
    assert!(text.contains("# FROM hf.co/u/r:Q4\n"), "{text}");
    assert!(text.contains(&format!("FROM {}\n", model.model_path.display())));
    assert!(
        text.contains("PARAMETER stop a\nPARAMETER stop b\n"),
        "{text}"
    );
    assert!(text.contains("MESSAGE user hi\n"), "{text}");
}

#[test]
fn missing_models_and_blobs_are_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    let name = ModelName::parse("m").expect("valid");
    let err = resolve_model(&store, &name).expect_err("absent");
    assert_eq!(err.to_string(), "model 'm:latest' not found");

    let weights = put(&store, media_type::MODEL, b"w");
    let config = put(&store, CONFIG_MEDIA_TYPE, b"{}");
    store
        .write_manifest(&name, &Manifest::new(config, vec![weights.clone()]))
        .expect("manifest");
    fs::remove_file(store.blob_path(&weights.digest)).expect("blob removed");
    let err = resolve_model(&store, &name).expect_err("incomplete");
    assert!(matches!(err, ResolveError::MissingBlob { .. }), "{err}");
}

#[test]
fn jinja_is_told_from_go_templates() {
    assert!(is_jinja(
        "{% for m in messages %}{{ m.content }}{% endfor %}"
    ));
    assert!(is_jinja("{{ messages[0].content }}"));
    assert!(!is_jinja(
        "{{ if .System }}{{ .System }}{{ end }}{{ .Prompt }}"
    ));
    assert!(!is_jinja("{{- range .Messages }}{{ .Content }}{{ end }}"));
}
