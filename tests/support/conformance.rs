//! Reading bpf_conformance `.data` files (../shared/conformance/README.md describes the format).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// One `.data` file, split into its sections.
#[derive(Debug, Default)]
pub struct DataFile {
    pub name: String,
    /// `-- asm` text, comments kept (the grammar strips them), and the line it starts on.
    pub asm: Option<(String, u32)>,
    /// `-- raw` slots as little-endian u64.
    pub raw: Option<Vec<u64>>,
    /// `-- raw` written as space-separated bytes (negative tests use this form).
    pub raw_bytes: Option<Vec<u8>>,
    pub mem: Vec<u8>,
    pub result: Option<u64>,
    pub error: Option<String>,
}

/// The conformance directory: `BPFKIT_CONFORMANCE_DIR`, else the copy kept in the repo
/// (tests/fixtures/conformance, from the project's shared/conformance snapshot; MIT, see its LICENSE).
pub fn conformance_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("BPFKIT_CONFORMANCE_DIR") {
        return Some(PathBuf::from(d));
    }
    let vendored = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/conformance");
    vendored.join("tests").is_dir().then_some(vendored)
}

pub fn parse_number(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x") {
        u64::from_str_radix(h, 16).ok()
    } else if let Some(d) = s.strip_prefix('-') {
        d.parse::<u64>().ok().map(|v| (v as i64).wrapping_neg() as u64)
    } else {
        s.parse().ok()
    }
}

pub fn read(path: &Path) -> std::io::Result<DataFile> {
    let text = std::fs::read_to_string(path)?;
    let mut f = DataFile { name: path.file_name().unwrap_or_default().to_string_lossy().into_owned(), ..Default::default() };
    let mut section = String::new();
    let mut body: Vec<(u32, &str)> = Vec::new();
    let flush = |section: &str, body: &mut Vec<(u32, &str)>, f: &mut DataFile| {
        let strip = |l: &str| l.split('#').next().unwrap_or("").trim().to_string();
        match section {
            "asm" => {
                let first = body.first().map(|(n, _)| *n).unwrap_or(1);
                f.asm = Some((body.iter().map(|(_, l)| *l).collect::<Vec<_>>().join("\n"), first));
            }
            "raw" => {
                let lines: Vec<String> = body.iter().map(|(_, l)| strip(l)).filter(|l| !l.is_empty()).collect();
                if lines.iter().all(|l| l.starts_with("0x")) {
                    f.raw = Some(lines.iter().filter_map(|l| parse_number(l)).collect());
                } else {
                    f.raw_bytes = Some(
                        lines.iter().flat_map(|l| l.split_whitespace().filter_map(|b| u8::from_str_radix(b, 16).ok()).collect::<Vec<_>>()).collect(),
                    );
                }
            }
            "mem" => {
                f.mem = body.iter().flat_map(|(_, l)| strip(l).split_whitespace().filter_map(|b| u8::from_str_radix(b, 16).ok()).collect::<Vec<_>>()).collect();
            }
            "result" => f.result = body.iter().map(|(_, l)| strip(l)).find(|l| !l.is_empty()).and_then(|l| parse_number(&l)),
            "error" => f.error = Some(body.iter().map(|(_, l)| l.trim()).collect::<Vec<_>>().join("\n")),
            _ => {}
        }
        body.clear();
    };
    for (i, line) in text.lines().enumerate() {
        if let Some(name) = line.trim().strip_prefix("--") {
            flush(&section, &mut body, &mut f);
            section = name.trim().to_string();
            continue;
        }
        body.push((i as u32 + 1, line));
    }
    flush(&section, &mut body, &mut f);
    Ok(f)
}

/// The `.data` files of a subdirectory, or `None` after a skip when the suite is missing.
pub fn files_or_skip(sub: &str) -> Option<Vec<PathBuf>> {
    let v = files(sub);
    if v.is_empty() {
        super::skip("conformance suite not found (set BPFKIT_CONFORMANCE_DIR)");
        return None;
    }
    Some(v)
}

/// All `.data` files of a subdirectory, sorted.
pub fn files(sub: &str) -> Vec<PathBuf> {
    let Some(dir) = conformance_dir() else { return Vec::new() };
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(sub))
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e == "data")).collect())
        .unwrap_or_default();
    v.sort();
    v
}
