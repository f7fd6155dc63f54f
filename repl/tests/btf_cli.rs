//! End-to-end tests of `bpfkit btf`: the binary reads the running kernel's BTF as a user runs
//! it, and its output is checked against what bpftool prints for the same file.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_bpfkit");
const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// Run `bpfkit` with `args`: `Ok(stdout)` when it succeeds, `Err(stderr)` when it fails the
/// way a command fails (status 1, `error: …` on stderr, nothing on stdout). It never panics.
fn bpfkit(args: &[&str]) -> Result<String, String> {
    let out: Output = Command::new(BIN).args(args).output().expect("run bpfkit");
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).expect("UTF-8"),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        !stderr.contains("panicked"),
        "bpfkit {args:?} panicked: {stderr}"
    );
    if out.status.success() {
        return Ok(stdout);
    }
    assert_eq!(out.status.code(), Some(1), "bpfkit {args:?}: {stderr}");
    assert!(
        stdout.is_empty() && stderr.starts_with("error: "),
        "bpfkit {args:?}: {stdout}{stderr}"
    );
    Err(stderr.into_owned())
}

/// `bpftool btf dump file vmlinux` (raw lines), or `None` after a skip line when vmlinux BTF
/// or bpftool is missing.
fn bpftool_raw(test: &str) -> Option<String> {
    if !Path::new(VMLINUX).exists() {
        support::skip(&format!(
            "{test}: {VMLINUX} does not exist (kernel without CONFIG_DEBUG_INFO_BTF)"
        ));
        return None;
    }
    match Command::new("bpftool")
        .args(["btf", "dump", "file", VMLINUX])
        .output()
    {
        Ok(out) if out.status.success() => Some(String::from_utf8(out.stdout).expect("UTF-8")),
        Ok(out) => panic!("bpftool btf dump: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => {
            support::skip(&format!("{test}: bpftool not runnable ({e})"));
            None
        }
    }
}

/// bpftool's type records: the `[ID] …` line and the tab-indented lines after it.
fn records(dump: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in dump.lines() {
        match out.last_mut() {
            Some(last) if line.starts_with('\t') => {
                last.push('\n');
                last.push_str(line);
            }
            _ => out.push(line.to_string()),
        }
    }
    out
}

#[test]
fn find_lists_every_type_of_a_name_with_its_kind_and_size() {
    let Some(dump) = bpftool_raw("btf find") else {
        return;
    };
    let out = bpfkit(&["btf", "find", "task_struct"]).unwrap();
    let theirs = dump
        .lines()
        .find(|l| l.contains(" STRUCT 'task_struct' "))
        .unwrap();
    let id = theirs.split(' ').next().unwrap();
    let size = theirs.split(' ').find(|w| w.starts_with("size=")).unwrap();
    assert!(
        out.lines()
            .any(|l| l == format!("{id} STRUCT 'task_struct' {size}")),
        "{out}\nbpftool: {theirs}"
    );
    // Every `task_struct` type bpftool lists, and nothing else.
    let all = dump
        .lines()
        .filter(|l| l.starts_with('[') && l.contains(" 'task_struct'"))
        .count();
    assert_eq!(out.lines().count(), all, "{out}");

    // CO-RE flavors: a name with a `___suffix` is listed under its base name.
    let flavored = dump.lines().filter(|l| l.starts_with('[')).find_map(|l| {
        let name = l.split('\'').nth(1)?;
        let (base, _) = name
            .split_once("___")
            .filter(|(base, _)| !base.is_empty())?;
        dump.contains(&format!(" '{base}' "))
            .then(|| (base.to_string(), name.to_string()))
    });
    match flavored {
        Some((base, flavor)) => {
            let out = bpfkit(&["btf", "find", &base]).unwrap();
            assert!(
                out.contains(&format!(" '{base}'")) && out.contains(&format!(" '{flavor}'")),
                "{out}"
            );
        }
        None => eprintln!(
            "vmlinux has no `name___flavor` type beside its base; flavor listing not exercised"
        ),
    }
    let err = bpfkit(&["btf", "find", "no_such_type_anywhere"]).unwrap_err();
    assert!(
        err.contains("no BTF type named \"no_such_type_anywhere\""),
        "{err}"
    );
}

#[test]
fn raw_dump_equals_bpftool_for_single_ids_and_the_whole_file() {
    let Some(dump) = bpftool_raw("btf dump --format raw") else {
        return;
    };
    // The first type of every kind bpftool prints.
    let mut picked: Vec<(String, String)> = Vec::new();
    for rec in records(&dump) {
        let kind = rec.split(' ').nth(1).unwrap_or_default().to_string();
        if !picked.iter().any(|(k, _)| *k == kind) {
            picked.push((kind, rec));
        }
    }
    assert!(
        picked.len() >= 15,
        "kinds: {:?}",
        picked.iter().map(|p| &p.0).collect::<Vec<_>>()
    );
    for (_, rec) in &picked {
        let id = rec[1..rec.find(']').unwrap()].to_string();
        let out = bpfkit(&["btf", "dump", "--format", "raw", &id]).unwrap();
        assert_eq!(out.trim_end(), rec, "type {id}");
    }
    let whole = bpfkit(&["btf", "dump", "--format", "raw"]).unwrap();
    assert_eq!(whole.lines().count(), dump.lines().count());
    for (n, (a, b)) in whole.lines().zip(dump.lines()).enumerate() {
        assert_eq!(a, b, "line {}", n + 1);
    }
    eprintln!(
        "{} kinds by id, and all {} lines, equal bpftool's",
        picked.len(),
        dump.lines().count()
    );
}

#[test]
fn c_dump_of_a_type_and_of_the_whole_file() {
    let Some(_) = bpftool_raw("btf dump --format c") else {
        return;
    };
    let one = bpfkit(&["btf", "dump", "--format", "c", "task_struct"]).unwrap();
    assert!(one.contains("struct task_struct {\n"), "{one}");
    assert!(
        !one.contains("#ifndef __VMLINUX_H__"),
        "a single declaration, not a header"
    );
    let deps = bpfkit(&["btf", "dump", "--deps", "task_struct"]).unwrap();
    assert!(deps.starts_with("#ifndef __VMLINUX_H__") && deps.contains("struct task_struct {\n"));
    assert!(deps.find("struct list_head {").unwrap() < deps.find("struct task_struct {").unwrap());
    // The whole file: bpftool's header, bar 1-byte enums' mode(byte) (see tests/btf_c.rs).
    let whole = bpfkit(&["btf", "dump"]).unwrap();
    let theirs = Command::new("bpftool")
        .args(["btf", "dump", "file", VMLINUX, "format", "c"])
        .output()
        .unwrap();
    let theirs = String::from_utf8(theirs.stdout).unwrap();
    assert_eq!(whole.replace(" __attribute__((mode(byte)))", ""), theirs);
}

#[test]
fn errors_name_the_type_or_the_file() {
    if !Path::new(VMLINUX).exists() {
        support::skip(&format!("btf errors: {VMLINUX} does not exist"));
        return;
    }
    let err = bpfkit(&["btf", "dump", "no_such_type_anywhere"]).unwrap_err();
    assert!(
        err.contains("no BTF type named \"no_such_type_anywhere\""),
        "{err}"
    );
    let err = bpfkit(&["btf", "dump", "--format", "raw", "4000000000"]).unwrap_err();
    assert!(err.contains("no BTF type [4000000000]"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let not_btf = dir.path().join("not.btf");
    std::fs::write(&not_btf, b"hello, this is not BTF at all").unwrap();
    let err = bpfkit(&["btf", "find", "x", "--file", not_btf.to_str().unwrap()]).unwrap_err();
    assert!(
        err.contains(&format!(
            "cannot read {}: BTF header: bad magic",
            not_btf.display()
        )),
        "{err}"
    );
    let err = bpfkit(&["btf", "dump", "--file", "/no/such/file"]).unwrap_err();
    assert!(err.contains("/no/such/file"), "{err}");
}

/// bpftool's `'NAME' type_id=N bits_offset=B` member lines of the STRUCT record named `name`:
/// (member name, offset in bits).
fn bpftool_members(dump: &str, name: &str) -> Vec<(String, u64)> {
    let record = records(dump)
        .into_iter()
        .find(|r| r.lines().next().is_some_and(|l| l.contains(&format!(" STRUCT '{name}' "))))
        .unwrap_or_else(|| panic!("bpftool lists no STRUCT '{name}'"));
    record
        .lines()
        .skip(1)
        .filter_map(|l| {
            let member = l.trim().split('\'').nth(1)?.to_string();
            let bits = l.split(' ').find_map(|w| w.strip_prefix("bits_offset="))?.parse().ok()?;
            Some((member, bits))
        })
        .collect()
}

#[test]
fn members_lays_out_a_struct_as_bpftool_sees_it() {
    let Some(dump) = bpftool_raw("btf members") else {
        return;
    };
    let out = bpfkit(&["btf", "members", "task_struct"]).unwrap();
    // Every named top-level member bpftool lists appears at the byte offset bpftool gives
    // (bitfields as byte:bit/width).
    let theirs = bpftool_members(&dump, "task_struct");
    assert!(theirs.len() > 100, "{theirs:?}");
    for (member, bits) in theirs.iter().filter(|(m, _)| !m.is_empty()) {
        let found = out.lines().any(|l| {
            let mut cols = l.split_whitespace();
            let offset = cols.next().unwrap_or_default();
            let rest: Vec<&str> = cols.skip(1).collect();
            let decl = rest.join(" ");
            let names_it = decl.ends_with(&format!(" {member}"))
                || decl.contains(&format!(" {member}["))
                || decl.contains(&format!("*{member}"))
                || decl.contains(&format!(" {member}:"))
                || decl.contains(&format!("(*{member})"));
            let at = if offset.contains(':') {
                offset.starts_with(&format!("{:#x}:{}/", bits / 8, bits % 8))
            } else {
                offset == format!("{:#x}", bits / 8)
            };
            names_it && at
        });
        assert!(found, "member {member} at bit {bits} not in:\n{out}");
    }
    let err = bpfkit(&["btf", "members", "no_such_struct_anywhere"]).unwrap_err();
    assert!(err.contains("no BTF struct or union named \"no_such_struct_anywhere\""), "{err}");
}

#[test]
fn path_resolves_hops_and_prints_the_co_re_reads() {
    let Some(dump) = bpftool_raw("btf path") else {
        return;
    };
    let out = bpfkit(&["btf", "path", "task_struct->real_parent->tgid"]).unwrap();
    let task = bpftool_members(&dump, "task_struct");
    let off = |m: &str| task.iter().find(|(n, _)| n == m).map(|(_, b)| b / 8).unwrap();
    assert!(out.contains(&format!("hop 1: task_struct->real_parent at {:#x} (struct task_struct *)", off("real_parent"))), "{out}");
    assert!(out.contains(&format!("hop 2: task_struct->tgid at {:#x} (pid_t)", off("tgid"))), "{out}");
    assert!(out.contains("reads: pid_t tgid, 4 bytes, signed"), "{out}");
    for line in [r#"core_field_offset(r7, "task_struct", "real_parent")"#, r#"core_field_offset(r7, "task_struct", "tgid")"#, "w0 = *(u32 *)(r10 - 0x8)", "r0 <<= 0x20", "r0 s>>= 0x20"] {
        assert!(out.contains(line), "{line} not in:\n{out}");
    }
    for (path, why) in [
        ("task_struct->comm", "into a buffer"),
        ("task_struct->pid->x", "not a pointer"),
        ("task_struct->no_such_member", "has no member \"no_such_member\""),
        ("task_struct", "TYPE->member"),
    ] {
        let err = bpfkit(&["btf", "path", path]).unwrap_err();
        assert!(err.contains(why), "{path}: {err}");
    }
}
