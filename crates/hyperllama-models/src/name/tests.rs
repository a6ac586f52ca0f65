use super::*;

use proptest::prelude::*;

/// Parses a name that the test knows is valid.
fn name(s: &str) -> ModelName {
    match ModelName::parse(s) {
        Ok(n) => n,
        Err(e) => panic!("{s:?} should parse: {e}"),
    }
}

/// The error of a name that the test knows is invalid.
fn invalid(s: &str) -> NameError {
    match ModelName::parse(s) {
        Ok(n) => panic!("{s:?} should be rejected, got {n}"),
        Err(e) => e,
    }
}

#[test]
fn defaults_fill_missing_parts() {
    let n = name("llama3");
    assert_eq!(
        (n.host(), n.namespace(), n.model(), n.tag()),
        ("registry.ollama.ai", "library", "llama3", "latest")
    );
    let n = name("jmorgan/llama3:8b");
    assert_eq!(
        (n.host(), n.namespace(), n.model(), n.tag()),
        ("registry.ollama.ai", "jmorgan", "llama3", "8b")
    );
}

#[test]
fn parses_ollama_examples() {
    let n = name("registry.ollama.ai/library/dolphin-mistral:7b-v2.6-dpo-laser-q6_K");
    assert_eq!(n.model(), "dolphin-mistral");
    assert_eq!(n.tag(), "7b-v2.6-dpo-laser-q6_K");
    let n = name("host:port/namespace/model:tag");
    assert_eq!(n.host(), "host:port");
    assert_eq!(n.tag(), "tag");
    let n = name("host:5000/namespace/model");
    assert_eq!((n.host(), n.tag()), ("host:5000", "latest"));
    let n = name("h/nn/mm:t");
    assert_eq!(
        (n.host(), n.namespace(), n.model(), n.tag()),
        ("h", "nn", "mm", "t")
    );
    name("_why/_the/_lucky:_stiff");
    name("host:https/namespace/model:tag");
}

#[test]
fn hugging_face_names_are_ordinary() {
    let n = name("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M");
    assert_eq!(n.host(), "hf.co");
    assert_eq!(n.namespace(), "bartowski");
    assert_eq!(n.model(), "Llama-3.2-1B-Instruct-GGUF");
    assert_eq!(n.tag(), "Q4_K_M");
    assert_eq!(n.repository(), "bartowski/Llama-3.2-1B-Instruct-GGUF");
    assert_eq!(
        n.display_shortest(),
        "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"
    );
}

#[test]
fn display_is_full_and_round_trips() {
    let n = name("llama3");
    assert_eq!(n.to_string(), "registry.ollama.ai/library/llama3:latest");
    assert_eq!(name(&n.to_string()), n);
    let n = name("localhost:5000/a/b:c");
    assert_eq!(n.to_string(), "localhost:5000/a/b:c");
    assert_eq!("localhost:5000/a/b:c".parse::<ModelName>(), Ok(n));
}

#[test]
fn display_shortest_matches_ollama_list() {
    assert_eq!(name("llama3").display_shortest(), "llama3:latest");
    assert_eq!(name("llama3:8b").display_shortest(), "llama3:8b");
    assert_eq!(name("ns/m:t").display_shortest(), "ns/m:t");
    assert_eq!(
        name("example.com/library/m").display_shortest(),
        "example.com/library/m:latest"
    );
    // Defaults are recognised in any case.
    assert_eq!(
        name("REGISTRY.ollama.ai/LIBRARY/m:t").display_shortest(),
        "m:t"
    );
    assert_eq!(
        name("registry.ollama.ai/Ns/m:t").display_shortest(),
        "Ns/m:t"
    );
}

#[test]
fn manifest_path_has_five_components() {
    let n = name("hf.co/user/repo:Q8_0");
    assert_eq!(
        n.manifest_path(),
        Path::new("manifests/hf.co/user/repo/Q8_0")
    );
    assert_eq!(
        name("llama3.2").manifest_path(),
        Path::new("manifests/registry.ollama.ai/library/llama3.2/latest")
    );
}

#[test]
fn from_manifest_path_reads_four_parts() {
    let n = ModelName::from_manifest_path(Path::new("registry.ollama.ai/library/llama3/8b"));
    assert_eq!(n, Ok(name("llama3:8b")));
    for bad in [
        "a/b/c",
        "a/b/c/d/e",
        "/a/b/c/d",
        "a/../c/d",
        "a/b/c/-d",
        "a/b./c/d",
    ] {
        assert!(
            ModelName::from_manifest_path(Path::new(bad)).is_err(),
            "{bad} should be rejected"
        );
    }
}

#[test]
fn rejects_bad_structure() {
    assert_eq!(invalid(""), NameError::Empty);
    assert!(matches!(
        invalid("a/b/c/d"),
        NameError::TooManySlashes { .. }
    ));
    assert!(matches!(
        invalid("a/b/c/d:t"),
        NameError::TooManySlashes { .. }
    ));
    assert!(matches!(
        invalid("http://host/ns/m"),
        NameError::Scheme { .. }
    ));
    assert!(matches!(invalid("m@sha256:00"), NameError::Digest { .. }));
    assert!(matches!(invalid("@"), NameError::Digest { .. }));
}

/// The part and problem of a rejected name.
fn problem(s: &str) -> (NamePart, PartProblem) {
    match invalid(s) {
        NameError::InvalidPart { part, problem, .. } => (part, problem),
        other => panic!("{s:?}: expected an invalid part, got {other:?}"),
    }
}

#[test]
fn rejects_bad_parts() {
    use NamePart::*;
    use PartProblem::*;
    assert_eq!(problem("mm:"), (Tag, Empty));
    assert_eq!(problem("n/m:"), (Tag, Empty));
    assert_eq!(problem("/nn/mm"), (Host, Empty));
    assert_eq!(problem("//mm"), (Host, Empty));
    assert_eq!(problem("hh//"), (Namespace, Empty));
    assert_eq!(problem("hh/nn/"), (Model, Empty));
    assert_eq!(problem(":t"), (Model, Empty));
    assert_eq!(problem("^"), (Model, BadFirstChar('^')));
    assert_eq!(problem("-hh/nn/mm:tt"), (Host, BadFirstChar('-')));
    assert_eq!(problem("hh/-nn/mm:tt"), (Namespace, BadFirstChar('-')));
    assert_eq!(problem("hh/nn/-mm:tt"), (Model, BadFirstChar('-')));
    assert_eq!(problem("hh/nn/mm:-tt"), (Tag, BadFirstChar('-')));
    assert_eq!(problem(".hidden"), (Model, BadFirstChar('.')));
    assert_eq!(problem("..:t"), (Model, BadFirstChar('.')));
    assert_eq!(problem("a..b"), (Model, DotDot));
    assert_eq!(problem("h..x/n/m"), (Host, DotDot));
    assert_eq!(problem("m:v1..2"), (Tag, DotDot));
    assert_eq!(problem("model."), (Model, TrailingDot));
    assert_eq!(problem("na.me/model"), (Namespace, BadChar('.')));
    assert_eq!(
        problem("host/name:space/model:tag"),
        (Namespace, BadChar(':'))
    );
    assert_eq!(problem("mo del"), (Model, BadChar(' ')));
    assert_eq!(problem("m\\x"), (Model, BadChar('\\')));
    assert_eq!(problem("m*x"), (Model, BadChar('*')));
    assert_eq!(problem("m\0x"), (Model, BadChar('\0')));
    assert_eq!(problem("m:t\"x"), (Tag, BadChar('"')));
    assert_eq!(problem("modèle"), (Model, BadChar('è')));
}

#[test]
fn length_limits() {
    let p80 = "a".repeat(80);
    let p81 = "a".repeat(81);
    name(&format!("{p80}/{p80}/{p80}:{p80}"));
    name(&format!("{}/n/m:t", "h".repeat(255)));
    assert_eq!(
        problem(&format!("{}/n/m:t", "h".repeat(256))),
        (NamePart::Host, PartProblem::TooLong { len: 256 })
    );
    assert_eq!(
        problem(&format!("n/{p81}")),
        (NamePart::Model, PartProblem::TooLong { len: 81 })
    );
    assert_eq!(
        problem(&format!("{p81}/m")),
        (NamePart::Namespace, PartProblem::TooLong { len: 81 })
    );
    assert_eq!(
        problem(&format!("m:{p81}")),
        (NamePart::Tag, PartProblem::TooLong { len: 81 })
    );
}

#[test]
fn error_messages_are_one_line() {
    let e = invalid("hh/nn/mm:-tt").to_string();
    assert_eq!(
        e,
        "invalid model name \"hh/nn/mm:-tt\": the tag \"-tt\" is invalid because it starts with '-' (must be a letter, digit or '_') (max 80 bytes)"
    );
    assert!(!e.contains('\n'));
}

#[test]
fn case_insensitive_comparison() {
    let a = name("Llama3:Latest");
    let b = name("llama3");
    assert_ne!(a, b);
    assert!(a.eq_ignore_case(&b));
    assert_eq!(a.case_folded(), b.case_folded());
    assert!(!a.eq_ignore_case(&name("llama3:8b")));
}

#[test]
fn with_tag_validates() {
    let n = name("m");
    assert_eq!(
        n.with_tag("x").map(|n| n.to_string()),
        Ok("registry.ollama.ai/library/m:x".into())
    );
    assert!(n.with_tag("a/b").is_err());
}

proptest! {
    #[test]
    fn parse_never_panics_and_valid_names_round_trip(s in "\\PC{0,40}") {
        if let Ok(n) = ModelName::parse(&s) {
            prop_assert_eq!(ModelName::parse(&n.to_string()), Ok(n.clone()));
            prop_assert_eq!(ModelName::parse(&n.display_shortest()), Ok(n.clone()));
            let path = n.manifest_path();
            prop_assert_eq!(path.components().count(), 5);
            prop_assert!(path.components().all(|c| matches!(c, Component::Normal(_))));
        }
    }

    #[test]
    fn generated_names_round_trip(
        host in "[a-z0-9_][a-z0-9_:-]{0,20}",
        ns in "[A-Za-z0-9_][A-Za-z0-9_-]{0,20}",
        model in "[A-Za-z0-9_][A-Za-z0-9_-]{0,10}(\\.[a-z0-9]{1,3})?",
        tag in "[A-Za-z0-9_][A-Za-z0-9_-]{0,20}",
    ) {
        let n = ModelName::new(&host, &ns, &model, &tag);
        let n = n.expect("generated parts are valid");
        let rel: PathBuf = n.manifest_path().components().skip(1).collect();
        prop_assert_eq!(ModelName::from_manifest_path(&rel), Ok(n.clone()));
        prop_assert_eq!(ModelName::parse(&n.to_string()), Ok(n));
    }
}
