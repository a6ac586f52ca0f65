use super::*;

use proptest::prelude::*;

/// Parses text the test knows is valid.
fn parse(text: &str) -> Modelfile {
    match Modelfile::parse(text) {
        Ok(m) => m,
        Err(e) => panic!("should parse: {e}\n{text}"),
    }
}

/// The error of text the test knows is invalid.
fn error(text: &str) -> ModelfileError {
    match Modelfile::parse(text) {
        Ok(m) => panic!("should fail: {m:?}"),
        Err(e) => e,
    }
}

/// A `PARAMETER` command.
fn param(name: &str, value: &str) -> Command {
    Command::Parameter {
        name: name.into(),
        value: value.into(),
    }
}

#[test]
fn parses_a_full_modelfile() {
    let text = r#"# A comment
FROM llama3.2:latest
from ./model.gguf
PARAMETER temperature 0.7
parameter stop <|im_end|>
PARAMETER stop "<|eot_id|>"
PARAMETER num_ctx 8192
PARAMETER use_mmap false
TEMPLATE """{{ if .System }}<|system|>
{{ .System }}{{ end }}
<|user|>{{ .Prompt }}"""
SYSTEM You are "Mario" from Super Mario Bros.
LICENSE """MIT
license"""
LICENSE Apache-2.0
MESSAGE user Is Toronto in Canada?
MESSAGE assistant "yes"
ADAPTER ./lora.gguf
DRAFT smollm2:135m
RENDERER qwen3
PARSER qwen3
REQUIRES 0.14.0
"#;
    let m = parse(text);
    assert_eq!(
        m.commands,
        vec![
            Command::From("llama3.2:latest".into()),
            Command::From("./model.gguf".into()),
            param("temperature", "0.7"),
            param("stop", "<|im_end|>"),
            param("stop", "<|eot_id|>"),
            param("num_ctx", "8192"),
            param("use_mmap", "false"),
            Command::Template(
                "{{ if .System }}<|system|>\n{{ .System }}{{ end }}\n<|user|>{{ .Prompt }}".into()
            ),
            Command::System("You are \"Mario\" from Super Mario Bros.".into()),
            Command::License("MIT\nlicense".into()),
            Command::License("Apache-2.0".into()),
            Command::Message {
                role: MessageRole::User,
                content: "Is Toronto in Canada?".into()
            },
            Command::Message {
                role: MessageRole::Assistant,
                content: "yes".into()
            },
            Command::Adapter("./lora.gguf".into()),
            Command::Draft("smollm2:135m".into()),
            Command::Renderer("qwen3".into()),
            Command::Parser("qwen3".into()),
            Command::Requires("0.14.0".into()),
        ]
    );
    assert_eq!(m.from(), Some("llama3.2:latest"));
    assert_eq!(m.draft(), Some("smollm2:135m"));
    assert_eq!(m.system(), Some("You are \"Mario\" from Super Mario Bros."));
    assert!(m.template().is_some_and(|t| t.starts_with("{{ if")));
}

#[test]
fn quoting_rules() {
    let m = parse("FROM x\nSYSTEM \"\"\"a \"quoted\" word\"\"\"\nTEMPLATE \"multi\nline\"   \nPARAMETER stop \"<|im_end|>\"\n");
    assert_eq!(m.system(), Some("a \"quoted\" word"));
    assert_eq!(m.template(), Some("multi\nline"));
    assert_eq!(m.commands[3], param("stop", "<|im_end|>"));
    assert_eq!(
        error("FROM x\nPARAMETER stop \"\"\"\n"),
        ModelfileError::Unterminated { line: 2 }
    );
}

#[test]
fn unterminated_quotes_fail_with_line() {
    assert_eq!(
        error("FROM x\n\nSYSTEM \"\"\"never closed\nstill going\n"),
        ModelfileError::Unterminated { line: 3 }
    );
    assert_eq!(
        error("FROM x\nSYSTEM \"open"),
        ModelfileError::Unterminated { line: 2 }
    );
}

#[test]
fn quotes_close_at_end_of_line_only() {
    let m = parse("FROM x\nSYSTEM \"say \"hi\" now\"\nTEMPLATE \"\"\"a\"\"\" b\n\"\"\"\n");
    assert_eq!(m.system(), Some("say \"hi\" now"));
    assert_eq!(m.template(), Some("a\"\"\" b\n"));
}

#[test]
fn instruction_names_ignore_case_and_values_are_trimmed() {
    let m = parse("  FrOm   model:tag   \r\n\tSyStEm\thello world  \r\n");
    assert_eq!(
        m.commands,
        vec![
            Command::From("model:tag".into()),
            Command::System("hello world".into())
        ]
    );
}

#[test]
fn comments_and_bom() {
    let m = parse("\u{feff}# top\n   # indented comment\nFROM a # not a comment here\n#FROM b\n");
    assert_eq!(
        m.commands,
        vec![Command::From("a # not a comment here".into())]
    );
}

#[test]
fn unknown_instruction_names_line() {
    let e = error("FROM x\nPARAMETER seed 1\nFORM y\n");
    assert_eq!(
        e,
        ModelfileError::UnknownInstruction {
            line: 3,
            instruction: "FORM".into()
        }
    );
    assert!(e
        .to_string()
        .starts_with("line 3: unknown instruction \"FORM\""));
    assert!(matches!(
        error("FROM: x\n"),
        ModelfileError::UnknownInstruction { line: 1, .. }
    ));
    assert!(matches!(
        error("FROM x\n\"quoted\"\n"),
        ModelfileError::UnknownInstruction { line: 2, .. }
    ));
}

#[test]
fn missing_values() {
    assert_eq!(
        error("FROM\n"),
        ModelfileError::MissingValue {
            line: 1,
            instruction: "FROM".into()
        }
    );
    assert_eq!(
        error("FROM   \nSYSTEM x"),
        ModelfileError::MissingValue {
            line: 1,
            instruction: "FROM".into()
        }
    );
    assert!(matches!(
        error("FROM x\nPARAMETER temperature\n"),
        ModelfileError::MissingValue { line: 2, .. }
    ));
    assert!(matches!(
        error("FROM x\nPARAMETER\n"),
        ModelfileError::MissingValue { line: 2, .. }
    ));
    assert!(matches!(
        error("FROM x\nMESSAGE user\n"),
        ModelfileError::MissingValue { line: 2, .. }
    ));
    // An explicitly empty quoted value is allowed.
    assert_eq!(parse("FROM x\nSYSTEM \"\"\n").system(), Some(""));
}

#[test]
fn missing_from() {
    assert_eq!(error(""), ModelfileError::MissingFrom);
    assert_eq!(
        error("# only comments\nSYSTEM hi\n"),
        ModelfileError::MissingFrom
    );
}

#[test]
fn message_roles() {
    assert_eq!(
        error("FROM x\nMESSAGE tool hi\n"),
        ModelfileError::InvalidMessageRole {
            line: 2,
            role: "tool".into()
        }
    );
    assert!(matches!(
        error("FROM x\nMESSAGE User hi\n"),
        ModelfileError::InvalidMessageRole { .. }
    ));
    let m = parse("FROM x\nMESSAGE system \"\"\"be\nbrief\"\"\"\n");
    assert_eq!(
        m.commands[1],
        Command::Message {
            role: MessageRole::System,
            content: "be\nbrief".into()
        }
    );
}

#[test]
fn parameters_are_checked() {
    assert_eq!(
        error("FROM x\nPARAMETER temprature 0.5\n"),
        ModelfileError::UnknownParameter {
            line: 2,
            name: "temprature".into()
        }
    );
    let bad = [
        ("num_ctx", "4k", ParamKind::Int),
        ("num_ctx", "1.5", ParamKind::Int),
        ("temperature", "hot", ParamKind::Float),
        ("temperature", "NaN", ParamKind::Float),
        ("use_mmap", "yes", ParamKind::Bool),
        ("seed", "99999999999999999999", ParamKind::Int),
    ];
    for (name, value, expected) in bad {
        let e = error(&format!("FROM x\nPARAMETER {name} {value}\n"));
        assert_eq!(
            e,
            ModelfileError::InvalidParameterValue {
                line: 2,
                name: name.into(),
                value: value.into(),
                expected
            },
        );
    }
    let ok = parse("FROM x\nPARAMETER seed -1\nPARAMETER top_p 1e-1\nPARAMETER use_mmap T\nPARAMETER num_gpu +0\nPARAMETER min_p 0\n");
    assert_eq!(ok.commands.len(), 6);
}

#[test]
fn deprecated_parameters_are_dropped() {
    let m = parse("FROM x\nPARAMETER mirostat 2\nPARAMETER use_mlock true\nPARAMETER top_k 10\n");
    assert_eq!(
        m.commands,
        vec![Command::From("x".into()), param("top_k", "10")]
    );
    assert_eq!(
        m.dropped_parameters,
        vec![(2, "mirostat".into()), (3, "use_mlock".into())]
    );
}

#[test]
fn params_layer_json() {
    let m = parse("FROM x\nPARAMETER temperature 0.6\nPARAMETER top_k 40\nPARAMETER stop a\nPARAMETER stop \"b c \"\nPARAMETER temperature 1\nPARAMETER use_mmap false\nPARAMETER top_p 0.9\n");
    let params = m.parameters();
    assert_eq!(
        String::from_utf8(params.to_json()).expect("utf-8"),
        "{\"stop\":[\"a\",\"b c \"],\"temperature\":1,\"top_k\":40,\"top_p\":0.9,\"use_mmap\":false}\n"
    );
    let back = Parameters::from_json(&params.to_json()).expect("parses");
    assert_eq!(back, params);
    let lines: Vec<String> = back.to_commands().iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        vec![
            "PARAMETER stop a",
            "PARAMETER stop \"b c \"",
            "PARAMETER temperature 1",
            "PARAMETER top_k 40",
            "PARAMETER top_p 0.9",
            "PARAMETER use_mmap false",
        ]
    );
    // A params layer from Ollama's registry.
    let ollama = Parameters::from_json(
        br#"{"stop":["<|start_header_id|>","<|end_header_id|>","<|eot_id|>"]}"#,
    )
    .expect("parses");
    assert_eq!(ollama.to_commands().len(), 3);
    assert!(Parameters::from_json(b"[1]").is_err());
}

#[test]
fn renders_like_ollama() {
    let m = parse("FROM /models/x.gguf\nTEMPLATE \"\"\"{{ .Prompt }}\n\"\"\"\nSYSTEM \" padded \"\nPARAMETER stop \"\"\"say \"\"\"\nMESSAGE user hello\nLICENSE \"\"\"has \"quotes\"\nand lines\"\"\"\n");
    assert_eq!(
        m.to_string(),
        "FROM /models/x.gguf\nTEMPLATE \"{{ .Prompt }}\n\"\nSYSTEM \" padded \"\nPARAMETER stop \"say \"\nMESSAGE user hello\nLICENSE \"\"\"has \"quotes\"\nand lines\"\"\"\n"
    );
    assert_eq!(parse(&m.to_string()), m);
    assert_eq!(quote("\"leading"), "\"\"\"\"leading\"\"\"");
    assert_eq!(quote(""), "\"\"");
}

/// Any value without `"""`, for the round-trip property.
fn value_strategy() -> impl Strategy<Value = String> {
    "[ -~\n\t]{0,30}".prop_filter("no triple quote", |s| {
        !s.contains("\"\"\"") && !s.ends_with('"')
    })
}

proptest! {
    #[test]
    fn parse_never_panics(text in "(?s).{0,200}") {
        let _ = Modelfile::parse(&text);
    }

    #[test]
    fn render_round_trips(system in value_strategy(), template in value_strategy(), stop in value_strategy()) {
        let m = Modelfile {
            commands: vec![
                Command::From("base".into()),
                Command::System(system),
                Command::Template(template),
                Command::Parameter { name: "stop".into(), value: stop },
            ],
            dropped_parameters: Vec::new(),
        };
        // Values that trim to nothing unquoted are quoted by the renderer, so all round-trip
        // except text whose surrounding blanks are eaten by an unquoted read.
        let text = m.to_string();
        let parsed = Modelfile::parse(&text);
        prop_assert!(parsed.is_ok(), "{:?}\n{}", parsed, text);
    }
}
