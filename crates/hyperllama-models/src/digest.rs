//! Blob digests: `sha256:<64 hex>`, the content address of every blob in the store.
//!
//! This module owns the digest's text forms and their validation: the wire form used in
//! manifests and registry URLs (`sha256:<hex>`) and the file-name form used under `blobs/`
//! (`sha256-<hex>`, Ollama's `manifest.BlobsPath` replaces the `:` with `-`). It also hashes
//! bytes ([`BlobDigest::of_bytes`], [`DigestWriter`]). It knows nothing about directories or the
//! network.
//!
//! # Invariants
//!
//! - A [`BlobDigest`] always holds exactly 32 bytes, so its hex is 64 lowercase characters.
//! - Parsing accepts upper- or lowercase hex (as Ollama's `^sha256[:-][0-9a-fA-F]{64}$`) but
//!   always prints lowercase, so equal digests print equally.
//! - Only `sha256` is accepted; any other algorithm is an error, never silently ignored.

use std::fmt;
use std::io;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// Why a string is not a blob digest.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// The string does not start with `sha256:` (or `sha256-` in a file name).
    #[error("invalid digest {input:?}: expected sha256:<64 hex digits>")]
    BadPrefix {
        /// The string as given (cut to 100 characters).
        input: String,
    },
    /// The part after the prefix is not 64 hex digits.
    #[error("invalid digest {input:?}: the hash must be 64 hex digits")]
    BadHex {
        /// The string as given (cut to 100 characters).
        input: String,
    },
}

/// A SHA-256 content digest, the name of a blob.
///
/// Serialises as `sha256:<hex>`, the form used in manifests.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobDigest([u8; 32]);

impl BlobDigest {
    /// The algorithm prefix in the wire form.
    pub const PREFIX: &'static str = "sha256:";
    /// The algorithm prefix in the file-name form.
    pub const FILE_PREFIX: &'static str = "sha256-";

    /// A digest from its 32 raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        BlobDigest(bytes)
    }

    /// The digest of `data`.
    pub fn of_bytes(data: &[u8]) -> Self {
        BlobDigest(Sha256::digest(data).into())
    }

    /// Parses the wire form `sha256:<64 hex>`.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let hex = s
            .strip_prefix(Self::PREFIX)
            .ok_or_else(|| DigestError::BadPrefix { input: clip(s) })?;
        Self::from_hex(hex).ok_or_else(|| DigestError::BadHex { input: clip(s) })
    }

    /// Parses either form, `sha256:<hex>` or `sha256-<hex>`, as Ollama's `BlobsPath` does.
    pub fn parse_any(s: &str) -> Result<Self, DigestError> {
        let hex = s
            .strip_prefix(Self::PREFIX)
            .or_else(|| s.strip_prefix(Self::FILE_PREFIX))
            .ok_or_else(|| DigestError::BadPrefix { input: clip(s) })?;
        Self::from_hex(hex).ok_or_else(|| DigestError::BadHex { input: clip(s) })
    }

    /// Parses a blob file name, `sha256-<64 hex>` exactly; `None` for anything else
    /// (partial downloads, temporary files, unrelated files).
    pub fn from_file_name(name: &str) -> Option<Self> {
        Self::from_hex(name.strip_prefix(Self::FILE_PREFIX)?)
    }

    /// 64 hex digits, either case.
    fn from_hex(hex: &str) -> Option<Self> {
        let hex = hex.as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            *byte = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
        }
        Some(BlobDigest(out))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex digits, without prefix.
    pub fn hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(HEX[usize::from(b >> 4)]);
            s.push(HEX[usize::from(b & 0xf)]);
        }
        s
    }

    /// The file name under `blobs/`: `sha256-<hex>`.
    pub fn file_name(&self) -> String {
        format!("{}{}", Self::FILE_PREFIX, self.hex())
    }

    /// The first 12 hex digits, as Ollama's progress shows it (`pulling 6a0746a1ec1a`).
    pub fn short(&self) -> String {
        let mut hex = self.hex();
        hex.truncate(12);
        hex
    }
}

/// Lowercase hex digits.
const HEX: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f',
];

/// The value of one hex digit.
fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The input for an error message, cut so that a huge input stays one short line.
fn clip(s: &str) -> String {
    s.chars().take(100).collect()
}

/// The wire form `sha256:<hex>`.
impl fmt::Display for BlobDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.hex())
    }
}

impl fmt::Debug for BlobDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobDigest({self})")
    }
}

impl FromStr for BlobDigest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BlobDigest::parse(s)
    }
}

impl Serialize for BlobDigest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BlobDigest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        BlobDigest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An [`io::Write`] that hashes what passes through it and counts the bytes.
#[derive(Clone, Debug, Default)]
pub struct DigestWriter {
    hasher: Sha256,
    n_bytes: u64,
}

impl DigestWriter {
    /// A writer that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hashes `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.n_bytes += data.len() as u64;
    }

    /// The number of bytes hashed so far.
    pub fn n_bytes(&self) -> u64 {
        self.n_bytes
    }

    /// The digest of everything hashed.
    pub fn finish(self) -> BlobDigest {
        BlobDigest(self.hasher.finalize().into())
    }
}

impl io::Write for DigestWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// sha256("") — a well-known value.
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hashes_known_values() {
        assert_eq!(BlobDigest::of_bytes(b"").hex(), EMPTY);
        let mut w = DigestWriter::new();
        w.update(b"ab");
        w.update(b"c");
        assert_eq!(w.n_bytes(), 3);
        assert_eq!(
            w.finish().to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn parses_both_forms() {
        let d = BlobDigest::parse(&format!("sha256:{EMPTY}")).expect("valid");
        assert_eq!(d, BlobDigest::of_bytes(b""));
        assert_eq!(d.file_name(), format!("sha256-{EMPTY}"));
        assert_eq!(d.short(), "e3b0c44298fc");
        assert_eq!(BlobDigest::parse_any(&format!("sha256-{EMPTY}")), Ok(d));
        assert_eq!(
            BlobDigest::from_file_name(&format!("sha256-{EMPTY}")),
            Some(d)
        );
        // Uppercase hex is accepted and printed lowercase.
        let upper = BlobDigest::parse(&format!("sha256:{}", EMPTY.to_uppercase()));
        assert_eq!(upper, Ok(d));
    }

    #[test]
    fn rejects_malformed() {
        let bad_prefix = [
            String::new(),
            EMPTY.into(),
            format!("sha512:{EMPTY}"),
            format!("sha256-{EMPTY}"),
        ];
        for s in bad_prefix {
            assert!(
                matches!(BlobDigest::parse(&s), Err(DigestError::BadPrefix { .. })),
                "{s}"
            );
        }
        let bad_hex = [
            "sha256:".to_owned(),
            format!("sha256:{}", &EMPTY[1..]),
            format!("sha256:{EMPTY}0"),
            format!("sha256:{}g", &EMPTY[1..]),
            format!("sha256:{}é", &EMPTY[2..]),
            format!("sha256:../{}", &EMPTY[3..]),
        ];
        for s in bad_hex {
            assert!(
                matches!(BlobDigest::parse(&s), Err(DigestError::BadHex { .. })),
                "{s}"
            );
        }
        for name in [
            format!("sha256-{EMPTY}-partial"),
            format!("sha256-{EMPTY}-partial-0"),
            "sha256-123".into(),
            ".tmp".into(),
        ] {
            assert_eq!(BlobDigest::from_file_name(&name), None, "{name}");
        }
    }

    #[test]
    fn error_input_is_clipped() {
        let long = "x".repeat(10_000);
        let msg = BlobDigest::parse(&long).expect_err("invalid").to_string();
        assert!(msg.len() < 200, "{msg}");
    }

    #[test]
    fn serde_uses_wire_form() {
        let d = BlobDigest::of_bytes(b"");
        let json = serde_json::to_string(&d).expect("serialises");
        assert_eq!(json, format!("\"sha256:{EMPTY}\""));
        assert_eq!(
            serde_json::from_str::<BlobDigest>(&json).expect("parses"),
            d
        );
        assert!(serde_json::from_str::<BlobDigest>("\"sha256:00\"").is_err());
    }

    proptest! {
        #[test]
        fn round_trips(bytes in any::<[u8; 32]>()) {
            let d = BlobDigest::from_bytes(bytes);
            prop_assert_eq!(BlobDigest::parse(&d.to_string()), Ok(d));
            prop_assert_eq!(BlobDigest::from_file_name(&d.file_name()), Some(d));
            prop_assert_eq!(d.as_bytes(), &bytes);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = BlobDigest::parse_any(&s);
        }
    }
}
