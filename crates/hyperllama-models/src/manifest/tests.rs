use super::*;

/// A manifest as registry.ollama.ai serves it for `llama3.2:latest` (compact, Go order).
const OLLAMA_MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:34bb5ab01051a11372a91f95f3fbbc51173eed8e7f13ec395b9ae9b8bd0e242b","size":561},"layers":[{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:dde5aa3fc5ffc17176b5e8bdc82f587b24b2678c6c66101bf7da77af9f7ccdff","size":2019377376},{"mediaType":"application/vnd.ollama.image.template","digest":"sha256:966de95ca8a62200913e3f8bfbf84c8494536f1b94b49166851e76644e966396","size":1429},{"mediaType":"application/vnd.ollama.image.license","digest":"sha256:fcc5a6bec9daf9b561a68827b67ab6088e1dba9d1fa2a50d7bbcc8384e0a265d","size":7711},{"mediaType":"application/vnd.ollama.image.license","digest":"sha256:a70ff7e570d97baaf4e62ac6e6ad9975e04caa6d900d3742d37698494479e0cd","size":6016},{"mediaType":"application/vnd.ollama.image.params","digest":"sha256:56bb8bd477a519ffa694fc449c2413c6f0e1d3b1c88fa7e3c9d88d3ae49d4dcb","size":96}]}"#;

/// A config blob as the registry serves it (older Ollama, with rootfs).
const OLLAMA_CONFIG: &str = r#"{"model_format":"gguf","model_family":"llama","model_families":["llama"],"model_type":"3.2B","file_type":"Q4_K_M","architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:dde5aa3fc5ffc17176b5e8bdc82f587b24b2678c6c66101bf7da77af9f7ccdff","sha256:966de95ca8a62200913e3f8bfbf84c8494536f1b94b49166851e76644e966396"]}}"#;

/// A digest made from a small number, for fixtures.
fn digest(n: u8) -> BlobDigest {
    BlobDigest::of_bytes(&[n])
}

#[test]
fn parses_and_rewrites_ollama_manifest_exactly() {
    let m = Manifest::from_json(OLLAMA_MANIFEST.as_bytes()).expect("parses");
    assert_eq!(m.schema_version, 2);
    assert_eq!(m.media_type, MANIFEST_MEDIA_TYPE);
    assert_eq!(m.config.media_type, CONFIG_MEDIA_TYPE);
    assert_eq!(m.config.size, 561);
    assert_eq!(m.layers.len(), 5);
    assert_eq!(m.model_layer().map(|l| l.size), Some(2_019_377_376));
    assert_eq!(m.layers_of(media_type::LICENSE).count(), 2);
    assert_eq!(
        m.total_size(),
        561 + 2_019_377_376 + 1429 + 7711 + 6016 + 96
    );
    assert_eq!(m.digests().count(), 6);
    // Go's encoder output: the same bytes plus one newline.
    assert_eq!(
        String::from_utf8(m.to_json()).expect("utf-8"),
        format!("{OLLAMA_MANIFEST}\n")
    );
}

#[test]
fn new_manifest_matches_go_encoder() {
    let mut from = Layer::new(media_type::MODEL, digest(1), 10);
    from.from = "registry.ollama.ai/library/x:latest".into();
    let m = Manifest::new(
        Layer::new(CONFIG_MEDIA_TYPE, digest(0), 5),
        vec![from, Layer::new(media_type::DRAFT, digest(2), 3)],
    );
    let text = String::from_utf8(m.to_json()).expect("utf-8");
    let expected = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{MANIFEST_MEDIA_TYPE}\",\"config\":{{\"mediaType\":\"{CONFIG_MEDIA_TYPE}\",\"digest\":\"{}\",\"size\":5}},\"layers\":[{{\"mediaType\":\"application/vnd.ollama.image.model\",\"digest\":\"{}\",\"size\":10,\"from\":\"registry.ollama.ai/library/x:latest\"}},{{\"mediaType\":\"application/vnd.ollama.image.draft\",\"digest\":\"{}\",\"size\":3}}]}}\n",
        digest(0),
        digest(1),
        digest(2)
    );
    assert_eq!(text, expected);
    assert_eq!(Manifest::from_json(text.as_bytes()).expect("parses"), m);
}

#[test]
fn unknown_fields_survive() {
    let text = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_MEDIA_TYPE}","config":{{"mediaType":"{CONFIG_MEDIA_TYPE}","digest":"{}","size":1,"annotations":{{"a":"b"}}}},"layers":[],"annotations":{{"k":"v"}}}}"#,
        digest(0)
    );
    let m = Manifest::from_json(text.as_bytes()).expect("parses");
    assert_eq!(
        m.extra.get("annotations"),
        Some(&serde_json::json!({"k": "v"}))
    );
    assert_eq!(
        String::from_utf8(m.to_json()).expect("utf-8"),
        format!("{text}\n")
    );
}

#[test]
fn null_layers_read_as_empty() {
    let text = format!(
        r#"{{"schemaVersion":2,"mediaType":"x","config":{{"mediaType":"y","digest":"{}","size":1}},"layers":null}}"#,
        digest(0)
    );
    assert!(Manifest::from_json(text.as_bytes())
        .expect("parses")
        .layers
        .is_empty());
}

#[test]
fn rejects_bad_manifests() {
    assert!(matches!(
        Manifest::from_json(b"not json"),
        Err(ManifestError::Json(_))
    ));
    assert!(matches!(
        Manifest::from_json(b"{}"),
        Err(ManifestError::Json(_))
    ));
    let v1 = OLLAMA_MANIFEST.replace("\"schemaVersion\":2", "\"schemaVersion\":1");
    assert!(matches!(
        Manifest::from_json(v1.as_bytes()),
        Err(ManifestError::SchemaVersion(1))
    ));
    let bad_digest = OLLAMA_MANIFEST.replace("sha256:34bb", "sha256:zzbb");
    assert!(matches!(
        Manifest::from_json(bad_digest.as_bytes()),
        Err(ManifestError::Json(_))
    ));
    let md5 = OLLAMA_MANIFEST.replace(
        "sha256:34bb5ab01051a11372a91f95f3fbbc51173eed8e7f13ec395b9ae9b8bd0e242b",
        "md5:00",
    );
    assert!(Manifest::from_json(md5.as_bytes()).is_err());
}

#[test]
fn config_round_trips_registry_blob() {
    let c = ModelConfig::from_json(OLLAMA_CONFIG.as_bytes()).expect("parses");
    assert_eq!(c.model_family, "llama");
    assert_eq!(c.model_type, "3.2B");
    assert_eq!(c.file_type, "Q4_K_M");
    assert_eq!(c.rootfs.as_ref().map(|r| r.diff_ids.len()), Some(2));
    assert_eq!(
        String::from_utf8(c.to_json()).expect("utf-8"),
        format!("{OLLAMA_CONFIG}\n")
    );
}

#[test]
fn config_follows_go_omitempty() {
    let c = ModelConfig {
        model_format: "gguf".into(),
        model_family: "qwen3".into(),
        architecture: "amd64".into(),
        os: "linux".into(),
        ..ModelConfig::default()
    };
    assert_eq!(
        String::from_utf8(c.to_json()).expect("utf-8"),
        "{\"model_format\":\"gguf\",\"model_family\":\"qwen3\",\"model_families\":null,\"model_type\":\"\",\"file_type\":\"\",\"architecture\":\"amd64\",\"os\":\"linux\"}\n"
    );
    let full = ModelConfig {
        model_families: Some(vec!["qwen3".into()]),
        renderer: "qwen3".into(),
        context_length: 4096,
        capabilities: vec!["completion".into()],
        draft: Some(DraftConfig {
            model_format: "gguf".into(),
            ..DraftConfig::default()
        }),
        ..c
    };
    let json = full.to_json();
    let text = String::from_utf8(json.clone()).expect("utf-8");
    assert!(text.contains(r#""renderer":"qwen3","capabilities":["completion"],"context_length":4096,"draft":{"model_format":"gguf"},"architecture""#), "{text}");
    assert_eq!(ModelConfig::from_json(&json).expect("parses"), full);
    assert!(matches!(
        ModelConfig::from_json(b"[]"),
        Err(ManifestError::ConfigJson(_))
    ));
}

#[test]
fn go_json_escapes_like_go() {
    let v = serde_json::json!({"t": "<a> & \u{2028}"});
    assert_eq!(
        String::from_utf8(go_json(&v)).expect("utf-8"),
        "{\"t\":\"\\u003ca\\u003e \\u0026 \\u2028\"}\n"
    );
}
