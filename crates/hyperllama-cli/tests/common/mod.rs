//! The test-model helpers, shared with the engine's tests (one copy of the code).

include!("../../../hyperllama-engine/tests/common/mod.rs");

/// A finished command's standard output (must be UTF-8).
#[allow(dead_code)]
pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

/// A finished command's standard error, lossily decoded.
#[allow(dead_code)]
pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A `HYPERLLAMA_HOST` where no server listens: the commands then work on the store directly
/// even when a developer's own server runs on the default port.
#[allow(dead_code)]
pub const NO_SERVER: &str = "127.0.0.1:1";

/// Reads the first line `hyperllama serve` writes on stderr ("... listening on http://ADDR")
/// and returns ADDR (`host:port`).
#[allow(dead_code)]
pub fn listening_address(stderr: &mut impl std::io::BufRead) -> String {
    let mut line = String::new();
    stderr.read_line(&mut line).expect("a line");
    assert!(line.contains("listening on http://"), "{line}");
    line.trim()
        .rsplit("http://")
        .next()
        .expect("an address")
        .to_owned()
}
