//! Model management as a user does it: `create`, `list`, `show`, `run NAME`, `cp`, `rm`, with
//! the real binary against a store in a temporary directory.
//!
//! Tests named `model_*` load a model and run one at a time (see `.config/nextest.toml`); the
//! others only read GGUF metadata.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{model_path, stderr, stdout, SMOLLM2};
use hyperllama_models::digest::{BlobDigest, DigestWriter};
use hyperllama_models::gguf::{GgmlType, GgufBuilder};

/// A store, an index and a home directory of their own.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("home")).expect("home created");
        Sandbox { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn models(&self) -> PathBuf {
        self.path().join("models")
    }

    /// `hyperllama` with this sandbox's store, index and home.
    fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hyperllama"));
        cmd.env_remove("HYPERLLAMA_LOG")
            .env("HYPERLLAMA_HOST", common::NO_SERVER)
            .env_remove("HYPERLLAMA_DEBUG")
            .env("HOME", self.path().join("home"))
            .env("HYPERLLAMA_MODELS", self.models())
            .env("HYPERLLAMA_DB", self.path().join("index.db"))
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("binary runs")
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "{args:?} failed: {}", stderr(&o));
        stdout(&o)
    }

    /// Writes a Modelfile into the sandbox and returns its path.
    fn modelfile(&self, file: &str, text: &str) -> PathBuf {
        let path = self.path().join(file);
        std::fs::write(&path, text).expect("Modelfile written");
        path
    }

    fn create(&self, name: &str, modelfile: &Path) -> Output {
        self.cmd()
            .arg("create")
            .arg(name)
            .arg("-f")
            .arg(modelfile)
            .output()
            .expect("binary runs")
    }

    fn blob_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.models().join("blobs"))
            .map(|dir| {
                dir.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The manifest files under `manifests/`, relative.
    fn manifest_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.models().join("manifests"), &mut out);
        out
    }

    /// The index's row for `name`, read with the library.
    fn index_record(&self, name: &str) -> hyperllama_models::registry::ModelRecord {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let registry =
                hyperllama_models::registry::Registry::open(&self.path().join("index.db"))
                    .await
                    .expect("index opens");
            let name = hyperllama_models::name::ModelName::parse(name).expect("valid name");
            let record = registry.get(&name).await.expect("query").expect("indexed");
            registry.close().await;
            record
        })
    }

    /// The model names `list` prints.
    fn listed(&self) -> Vec<String> {
        let out = self.ok(&["list"]);
        let mut lines = out.lines();
        let header = lines.next().expect("header");
        assert!(header.starts_with("NAME"), "{out}");
        lines
            .map(|l| l.split_whitespace().next().expect("a name").to_owned())
            .collect()
    }
}

/// A failure ends with one `Error: ...` line on stderr (progress may precede it) and exits 1.
fn assert_clean_failure(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("Error: "), "{err}");
    assert_eq!(
        err.matches("Error").count(),
        1,
        "one error line expected: {err}"
    );
    assert!(last.contains(needle), "expected {needle:?} in {err}");
}

/// A valid GGUF with a few kilobytes of F32 weights (metadata only is ever read).
fn tiny_gguf(path: &Path, extra_bytes: u64) {
    GgufBuilder::new(3)
        .kv("general.architecture", "llama")
        .kv("general.file_type", 0u32)
        .kv("llama.context_length", 256u32)
        .kv("llama.embedding_length", 16u32)
        .tensor(
            "token_embd.weight",
            vec![16, 8],
            GgmlType::F32,
            vec![0; 16 * 8 * 4],
        )
        .write(path)
        .expect("GGUF written");
    if extra_bytes > 0 {
        // Padding after the data section: still a valid file, but large (sparse on disk).
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .expect("opened");
        let len = file.metadata().expect("stat").len();
        file.set_len(len + extra_bytes).expect("extended");
    }
}

fn sha256_of(path: &Path) -> BlobDigest {
    let mut hasher = DigestWriter::new();
    std::io::copy(&mut std::fs::File::open(path).expect("opened"), &mut hasher).expect("hashed");
    hasher.finish()
}

/// Links (or copies) the test model next to the Modelfiles, so `FROM smol.gguf` is relative.
fn link_smollm2(sandbox: &Sandbox) -> PathBuf {
    let dest = sandbox.path().join("smol.gguf");
    std::os::unix::fs::symlink(model_path(SMOLLM2), &dest).expect("linked");
    dest
}

#[test]
fn model_create_list_show_run_cp_rm() {
    let sb = Sandbox::new();
    let gguf = link_smollm2(&sb);
    let modelfile = sb.modelfile(
        "Modelfile",
        "# a comment\nFROM smol.gguf\nPARAMETER temperature 0\nPARAMETER stop \"<|im_end|>\"\n\
         SYSTEM You are a terse assistant.\nLICENSE \"\"\"Apache License\nVersion 2.0\nthird line\"\"\"\n",
    );
    let o = sb.create("smol", &modelfile);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    let weights = sha256_of(&gguf);
    for line in [
        "gathering model components".to_owned(),
        format!("copying file {weights} 100%"),
        "parsing GGUF".to_owned(),
        format!("using existing layer {weights}"),
        "writing manifest".to_owned(),
        "success".to_owned(),
    ] {
        assert!(err.lines().any(|l| l == line), "missing {line:?} in {err}");
    }
    assert!(err.contains("creating new layer sha256:"), "{err}");

    // The same Modelfile again: nothing new is written.
    let o = sb.create("smol", &modelfile);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("copying file"), "{err}");
    assert!(!err.contains("creating new layer"), "{err}");

    // list: NAME, ID (first 12 hex of the manifest's digest), SIZE, MODIFIED.
    let out = sb.ok(&["list"]);
    let manifest = sb
        .models()
        .join("manifests/registry.ollama.ai/library/smol/latest");
    let id = sha256_of(&manifest).short();
    let row = out.lines().nth(1).expect("one model");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[..4],
        ["smol:latest", id.as_str(), "98", "MB"],
        "{out}"
    );
    assert!(row.ends_with("ago"), "{out}");
    assert_eq!(sb.ok(&["ls"]), out, "ls is list");

    let out = sb.ok(&["show", "smol"]);
    for needle in [
        "  Model\n",
        "architecture        llama",
        "parameters          134.52M",
        "context length      8192",
        "embedding length    576",
        "quantization        Q4_1",
        "  Capabilities\n    completion\n",
        "  Parameters\n",
        "temperature    0",
        "stop           \"<|im_end|>\"",
        "  System\n    You are a terse assistant.\n",
        "  License\n    Apache License\n    Version 2.0\n    ...\n",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
    let out = sb.ok(&["show", "smol", "--modelfile"]);
    let blob = sb.models().join("blobs").join(weights.file_name());
    assert!(out.contains(&format!("FROM {}\n", blob.display())), "{out}");
    assert!(out.contains("# FROM smol:latest\n"), "{out}");
    assert!(out.contains("PARAMETER temperature 0\n"), "{out}");
    let out = sb.ok(&["show", "smol", "--parameters"]);
    assert!(out.contains("temperature                    0\n"), "{out}");
    assert_eq!(
        sb.ok(&["show", "smol", "--system"]),
        "You are a terse assistant.\n"
    );
    assert!(sb.ok(&["show", "smol", "--license"]).contains("third line"));
    assert!(sb
        .ok(&["show", "smol", "--template"])
        .contains("<|im_start|>"));
    let out = sb.ok(&["show", "smol", "-v"]);
    for needle in [
        "general.architecture",
        "tokenizer.ggml.tokens",
        "token_embd.weight",
        "third line",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in verbose show");
    }

    // run by name: the params layer (temperature 0, stop) and SYSTEM apply, as the same flags
    // given to a run of the file do.
    let prompt = "What is the capital of France?";
    let by_name = sb.ok(&["run", "smol", "--num-predict", "8", prompt]);
    let by_path = sb.ok(&[
        "run",
        gguf.to_str().expect("UTF-8 path"),
        "--temperature",
        "0",
        "--stop",
        "<|im_end|>",
        "--system",
        "You are a terse assistant.",
        "--num-predict",
        "8",
        prompt,
    ]);
    assert!(!by_name.trim().is_empty());
    assert_eq!(by_name, by_path);
    let other_system = sb.ok(&[
        "run",
        "smol",
        "--num-predict",
        "8",
        "--system",
        "Answer in French.",
        prompt,
    ]);
    assert_ne!(
        other_system, by_name,
        "--system overrides the model's SYSTEM"
    );
    let record = sb.index_record("smol");
    assert!(record.last_used_at.is_some(), "run records the last use");

    // cp shares the blobs; rm keeps them while the copy uses them.
    assert_eq!(
        sb.ok(&["cp", "smol", "smol2"]),
        "copied 'smol' to 'smol2'\n"
    );
    assert_eq!(sb.listed(), ["smol2:latest", "smol:latest"]);
    let blobs = sb.blob_files();
    assert_eq!(sb.ok(&["rm", "smol"]), "deleted 'smol'\n");
    assert_eq!(sb.blob_files(), blobs, "the copy still uses every blob");
    assert_eq!(sb.listed(), ["smol2:latest"]);
    assert_eq!(sb.ok(&["rm", "smol2"]), "deleted 'smol2'\n");
    assert!(sb.blob_files().is_empty(), "{:?}", sb.blob_files());
    assert!(sb.listed().is_empty());
    assert!(sb.manifest_files().is_empty());
}

#[test]
fn bad_modelfiles_fail_cleanly_and_leave_nothing_visible() {
    let sb = Sandbox::new();
    tiny_gguf(&sb.path().join("tiny.gguf"), 0);
    std::fs::write(
        sb.path().join("corrupt.gguf"),
        b"GGUF\x03\x00\x00\x00\xff\xff",
    )
    .expect("written");
    let cases = [
        (
            "FROM tiny.gguf\nFLY away\n",
            "line 2: unknown instruction \"FLY\"",
        ),
        (
            "FROM tiny.gguf\nPARAMETER warp 9\n",
            "line 2: unknown parameter \"warp\"",
        ),
        (
            "FROM tiny.gguf\nPARAMETER top_k many\n",
            "expected an integer",
        ),
        ("FROM missing.gguf\n", "missing.gguf not found"),
        (
            "FROM corrupt.gguf\n",
            "corrupt.gguf is not a valid GGUF file: ",
        ),
        ("FROM nosuch\n", "base model 'nosuch:latest' not found"),
        ("SYSTEM hi\n", "no FROM line"),
    ];
    for (text, needle) in cases {
        let modelfile = sb.modelfile("Modelfile", text);
        let o = sb.create("broken", &modelfile);
        assert_clean_failure(&o, needle);
    }
    let o = sb.create("broken", &sb.path().join("no-such-Modelfile"));
    assert_clean_failure(&o, "cannot read the Modelfile");
    assert!(sb.manifest_files().is_empty(), "{:?}", sb.manifest_files());
    assert!(
        sb.blob_files().is_empty(),
        "nothing copied: {:?}",
        sb.blob_files()
    );
    assert!(sb.listed().is_empty());

    // A good create afterwards works, and the index sees it.
    let modelfile = sb.modelfile("Modelfile", "FROM tiny.gguf\n");
    let o = sb.create("good", &modelfile);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(sb.listed(), ["good:latest"]);

    // `~/` is the home directory, as in Ollama.
    std::fs::copy(
        sb.path().join("tiny.gguf"),
        sb.path().join("home/tiny.gguf"),
    )
    .expect("copied");
    let modelfile = sb.modelfile("Home", "FROM ~/tiny.gguf\n");
    let o = sb.create("from-home", &modelfile);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(sb.ok(&["rm", "from-home"]), "deleted 'from-home'\n");

    // An adapter is stored, but running would ignore it: refused clearly instead.
    let modelfile = sb.modelfile("Adapted", "FROM tiny.gguf\nADAPTER tiny.gguf\n");
    let o = sb.create("adapted", &modelfile);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_clean_failure(
        &sb.run(&["run", "adapted", "hi"]),
        "has a LoRA adapter, which HyperLlama cannot apply yet",
    );
    assert_eq!(sb.ok(&["rm", "adapted"]), "deleted 'adapted'\n");

    // The index is a cache: deleted or garbage, it is rebuilt from the manifests.
    std::fs::remove_file(sb.path().join("index.db")).expect("index deleted");
    assert_eq!(sb.listed(), ["good:latest"]);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(sb.path().join(format!("index.db{suffix}")));
    }
    std::fs::write(sb.path().join("index.db"), b"not a database").expect("written");
    assert_eq!(sb.listed(), ["good:latest"]);
    // A manifest written behind its back (as Ollama would) is seen by the next command.
    let manifests = sb.models().join("manifests/registry.ollama.ai/library");
    std::fs::create_dir_all(manifests.join("twin")).expect("dir");
    std::fs::copy(manifests.join("good/latest"), manifests.join("twin/latest")).expect("copied");
    assert_eq!(sb.listed().len(), 2);
}

#[test]
fn bad_names_fail_cleanly() {
    let sb = Sandbox::new();
    tiny_gguf(&sb.path().join("tiny.gguf"), 0);
    let modelfile = sb.modelfile("Modelfile", "FROM tiny.gguf\n");
    for name in ["../x", "a//b", "-x", "a b", "a:b:c", "x/y/z/w", "ok:"] {
        let o = sb
            .cmd()
            .args(["create", "-f"])
            .arg(&modelfile)
            .arg("--")
            .arg(name)
            .output()
            .expect("runs");
        assert_clean_failure(&o, "invalid model name");
    }
    for args in [
        ["cp", "tiny", "a//b"],
        ["show", "..", "-v"],
        ["rm", "a b", "x"],
    ] {
        assert_clean_failure(&sb.run(&args), "invalid model name");
    }
    assert_clean_failure(
        &sb.run(&["show", "nosuch"]),
        "model 'nosuch:latest' not found",
    );
    assert_clean_failure(
        &sb.run(&["rm", "nosuch"]),
        "model 'nosuch:latest' not found",
    );
    assert_clean_failure(
        &sb.run(&["cp", "nosuch", "y"]),
        "model 'nosuch:latest' not found",
    );
    assert_clean_failure(
        &sb.run(&["run", "nosuch", "hi"]),
        "model 'nosuch' not found, try `hyperllama pull nosuch`",
    );
    assert!(sb.manifest_files().is_empty());
}

#[test]
fn a_killed_create_leaves_nothing_visible_and_concurrent_creates_succeed() {
    let sb = Sandbox::new();
    let big = sb.path().join("big.gguf");
    tiny_gguf(&big, 512 << 20);
    let modelfile = sb.modelfile("Modelfile", "FROM big.gguf\n");
    let mut child = sb
        .cmd()
        .args(["create", "big", "-f"])
        .arg(&modelfile)
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    // Kill it while it copies: as soon as its temporary file appears under blobs/.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !sb.blob_files().iter().any(|f| f.starts_with(".tmp-")) {
        assert!(
            child.try_wait().expect("status").is_none(),
            "create finished before it could be killed mid-copy"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the copy never started"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("killed");
    child.wait().expect("reaped");
    assert!(sb.manifest_files().is_empty());
    assert!(
        sb.blob_files().iter().all(|f| !f.starts_with("sha256-")),
        "no blob became visible: {:?}",
        sb.blob_files()
    );
    assert!(sb.listed().is_empty());

    // Two creates at once, one of them of the same name again.
    tiny_gguf(&sb.path().join("tiny.gguf"), 0);
    let small = sb.modelfile("Small", "FROM tiny.gguf\nSYSTEM same\n");
    let children: Vec<_> = ["one", "two", "big"]
        .iter()
        .map(|name| {
            let file = if *name == "big" { &modelfile } else { &small };
            sb.cmd()
                .args(["create", name, "-f"])
                .arg(file)
                .stderr(Stdio::piped())
                .spawn()
                .expect("starts")
        })
        .collect();
    for child in children {
        let o = child.wait_with_output().expect("finishes");
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(sb.listed().len(), 3);
    let blobs = sb.blob_files();
    assert_eq!(
        blobs.iter().filter(|f| f.starts_with("sha256-")).count(),
        // big + tiny weights, two configs (different GGUF facts), one system layer.
        5,
        "{blobs:?}"
    );
}

#[test]
fn a_full_disk_during_create_fails_cleanly_and_leaves_nothing_visible() {
    let sb = Sandbox::new();
    let big = sb.path().join("big.gguf");
    tiny_gguf(&big, 8 << 20);
    let modelfile = sb.modelfile("Modelfile", "FROM big.gguf\n");
    // A file-size limit of 1 MiB makes writes past it fail with EFBIG, as writes fail on a full
    // disk; SIGXFSZ is ignored so that the write returns the error instead of killing us.
    let o = Command::new("bash")
        .arg("-c")
        .arg(r#"trap '' XFSZ; ulimit -f 1024; exec "$@""#)
        .arg("bash")
        .arg(env!("CARGO_BIN_EXE_hyperllama"))
        .args(["create", "big", "-f"])
        .arg(&modelfile)
        .env_remove("HYPERLLAMA_LOG")
        .env("HYPERLLAMA_HOST", common::NO_SERVER)
        .env("HOME", sb.path().join("home"))
        .env("HYPERLLAMA_MODELS", sb.models())
        .env("HYPERLLAMA_DB", sb.path().join("index.db"))
        .stdin(Stdio::null())
        .output()
        .expect("binary runs");
    assert_clean_failure(&o, "File too large");
    assert!(sb.manifest_files().is_empty());
    assert!(
        sb.blob_files().iter().all(|f| !f.starts_with("sha256-")),
        "no blob became visible: {:?}",
        sb.blob_files()
    );
    assert!(sb.listed().is_empty());
    // With room again, the same create succeeds.
    let o = sb.create("big", &modelfile);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(sb.listed(), vec!["big:latest".to_owned()]);
}

/// Writes `bytes` as an Ollama blob and returns its digest and size.
fn ollama_blob(models: &Path, bytes: &[u8]) -> (BlobDigest, usize) {
    let digest = BlobDigest::of_bytes(bytes);
    std::fs::write(models.join("blobs").join(digest.file_name()), bytes).expect("blob written");
    (digest, bytes.len())
}

/// A models folder exactly as Ollama writes one: its manifest and config JSON byte for byte,
/// a Go template layer and a params layer, and the weights blob.
fn ollama_folder(models: &Path) {
    std::fs::create_dir_all(models.join("blobs")).expect("blobs dir");
    let source = model_path(SMOLLM2);
    let weights = sha256_of(&source);
    let weights_path = models.join("blobs").join(weights.file_name());
    if std::fs::hard_link(&source, &weights_path).is_err() {
        std::fs::copy(&source, &weights_path).expect("weights copied");
    }
    let weights_size = std::fs::metadata(&source).expect("stat").len();
    let template = "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}\
                    {{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n\
                    {{ end }}<|im_start|>assistant\n";
    let (t, t_size) = ollama_blob(models, template.as_bytes());
    let (p, p_size) = ollama_blob(
        models,
        b"{\"stop\":[\"<|im_start|>\",\"<|im_end|>\"],\"temperature\":0}\n",
    );
    let config = format!(
        "{{\"model_format\":\"gguf\",\"model_family\":\"llama\",\"model_families\":[\"llama\"],\
         \"model_type\":\"134.52M\",\"file_type\":\"Q4_1\",\"architecture\":\"amd64\",\"os\":\"linux\",\
         \"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[\"{weights}\",\"{t}\",\"{p}\"]}}}}\n"
    );
    let (c, c_size) = ollama_blob(models, config.as_bytes());
    let manifest = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\
         \"config\":{{\"mediaType\":\"application/vnd.docker.container.image.v1+json\",\"digest\":\"{c}\",\"size\":{c_size}}},\
         \"layers\":[{{\"mediaType\":\"application/vnd.ollama.image.model\",\"digest\":\"{weights}\",\"size\":{weights_size}}},\
         {{\"mediaType\":\"application/vnd.ollama.image.template\",\"digest\":\"{t}\",\"size\":{t_size}}},\
         {{\"mediaType\":\"application/vnd.ollama.image.params\",\"digest\":\"{p}\",\"size\":{p_size}}}]}}\n"
    );
    let dir = models.join("manifests/registry.ollama.ai/library/smollm2");
    std::fs::create_dir_all(&dir).expect("manifest dir");
    std::fs::write(dir.join("135m"), manifest).expect("manifest written");
}

/// Every file under `dir` with its size and modification time.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("readable").flatten() {
            let meta = entry.metadata().expect("stat");
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                out.push((entry.path(), meta.len(), meta.modified().expect("mtime")));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn model_an_ollama_models_folder_lists_shows_and_runs_untouched() {
    let sb = Sandbox::new();
    let models = sb.models();
    ollama_folder(&models);
    let before = snapshot(&models);
    // The index goes to its default place under HOME, never into the Ollama folder.
    let run = |args: &[&str]| {
        let o = sb
            .cmd()
            .env_remove("HYPERLLAMA_DB")
            .args(args)
            .output()
            .expect("runs");
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    let out = run(&["list"]);
    assert!(
        out.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("smollm2:135m ")),
        "{out}"
    );
    let out = run(&["show", "smollm2:135m"]);
    assert!(out.contains("architecture        llama"), "{out}");
    assert!(out.contains("quantization        Q4_1"), "{out}");
    assert!(out.contains("stop           \"<|im_start|>\""), "{out}");
    assert!(run(&["show", "smollm2:135m", "--template"]).contains("{{ .System }}"));

    // The Go template is not run: the GGUF's own template is, with the params layer's
    // temperature 0 and stop strings, so the answer equals a greedy run of the file.
    let prompt = "Name a color.";
    let by_name = run(&["run", "SmolLM2:135M", "--num-predict", "8", prompt]);
    let gguf = model_path(SMOLLM2);
    let by_path = run(&[
        "run",
        gguf.to_str().expect("UTF-8 path"),
        "--temperature",
        "0",
        "--stop",
        "<|im_start|>",
        "--stop",
        "<|im_end|>",
        "--num-predict",
        "8",
        prompt,
    ]);
    assert!(!by_name.trim().is_empty());
    assert_eq!(by_name, by_path);
    assert_eq!(snapshot(&models), before, "the Ollama folder was modified");
    let index_dir = sb.path().join("home/.hyperllama");
    let indexes: Vec<_> = std::fs::read_dir(&index_dir)
        .expect("index dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        indexes
            .iter()
            .any(|n| n.starts_with("index-") && n.ends_with(".db")),
        "{indexes:?}"
    );
}
