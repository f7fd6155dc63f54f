//! Tab completion for the interactive REPL (a rustyline [`Helper`]): `:commands` and their
//! keywords, mnemonics, registers, helper names, the session's map and program names, and
//! kernel BTF type names (read on the first `:btf` completion).

use std::cell::OnceCell;

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

use super::table::COMMANDS;

/// Instruction words of both dialects.
const MNEMONICS: &[&str] = &[
    "mov", "mov32", "add", "add32", "sub", "sub32", "mul", "mul32", "div", "div32", "sdiv", "mod", "mod32",
    "smod", "and", "and32", "or", "or32", "xor", "xor32", "lsh", "lsh32", "rsh", "rsh32", "arsh", "arsh32",
    "neg", "neg32", "le16", "le32", "le64", "be16", "be32", "be64", "bswap16", "bswap32", "bswap64",
    "ldxb", "ldxh", "ldxw", "ldxdw", "stxb", "stxh", "stxw", "stxdw", "stb", "sth", "stw", "stdw", "lddw",
    "ja", "jeq", "jne", "jgt", "jge", "jlt", "jle", "jsgt", "jsge", "jslt", "jsle", "jset", "call", "callx",
    "exit", "goto", "gotol", "if", "may_goto", "ll",
];

const REGISTERS: &[&str] = &["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "w0", "w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8", "w9"];

/// Second words of commands that take a keyword there.
fn keywords(cmd: &str) -> &'static [&'static str] {
    match cmd {
        ":map" => &["create", "get", "set", "del", "dump", "pin", "open", "list", "show"],
        ":prog" => &["list", "show", "dump"],
        ":link" => &["list", "show", "detach"],
        ":trigger" => &["getpid", "udp"],
        _ => &[],
    }
}

/// What completion knows of the session; the REPL refreshes it after every line.
#[derive(Default)]
pub struct ReplHelper {
    pub maps: Vec<String>,
    pub progs: Vec<String>,
    btf_names: OnceCell<Vec<String>>,
}

impl ReplHelper {
    fn btf_names(&self) -> &[String] {
        self.btf_names.get_or_init(|| {
            let Ok(btf) = bpfkit::core_btf::Btf::vmlinux() else {
                return Vec::new();
            };
            let mut names: Vec<String> = btf
                .ids()
                .filter_map(|id| btf.name_of(id).ok().filter(|n| !n.is_empty()).map(str::to_owned))
                .collect();
            names.sort();
            names.dedup();
            names
        })
    }

    /// The candidates for `word` (the text being completed) on a line whose words before
    /// it are `before`.
    pub fn candidates(&self, before: &[&str], word: &str) -> Vec<String> {
        let mut pool: Vec<String> = Vec::new();
        let names = |pool: &mut Vec<String>| {
            pool.extend(self.maps.iter().cloned());
            pool.extend(self.progs.iter().cloned());
        };
        match before.first() {
            None if word.starts_with(':') => pool.extend(COMMANDS.iter().map(|c| format!(":{}", c.name))),
            Some(&":btf") => pool.extend(self.btf_names().iter().cloned()),
            // `:watch MAP … as TYPE`: kernel types to read records as.
            Some(&":watch") if before.last() == Some(&"as") => pool.extend(self.btf_names().iter().cloned()),
            Some(&":helper") => pool.extend(helper_names()),
            Some(&":help") => pool.extend(COMMANDS.iter().map(|c| c.name.to_owned())),
            Some(cmd) if cmd.starts_with(':') => {
                if before.len() == 1 {
                    pool.extend(keywords(cmd).iter().map(|k| (*k).to_owned()));
                }
                names(&mut pool);
            }
            _ => {
                // An instruction: after `call`, helpers; inside `map[`, maps; else everything.
                if before.last() == Some(&"call") {
                    pool.extend(helper_names());
                } else {
                    pool.extend(MNEMONICS.iter().chain(REGISTERS).map(|s| (*s).to_owned()));
                    pool.extend(helper_names());
                    pool.extend(self.maps.iter().map(|m| format!("map[{m}]")));
                }
            }
        }
        let mut out: Vec<String> = pool.into_iter().filter(|c| c.starts_with(word) && c != word).collect();
        out.sort();
        out.dedup();
        out
    }
}

fn helper_names() -> impl Iterator<Item = String> {
    bpfkit::helpers::ids::HELPER_IDS.iter().map(|(_, n)| (*n).to_owned())
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let head = &line[..pos];
        let start = head
            .rfind(|c: char| c.is_whitespace() || c == ',' || c == '(')
            .map_or(0, |i| i + 1);
        let word = &head[start..];
        let before: Vec<&str> = head[..start].split(|c: char| c.is_whitespace() || c == ',').filter(|w| !w.is_empty()).collect();
        let pairs = self
            .candidates(&before, word)
            .into_iter()
            .map(|c| Pair { display: c.clone(), replacement: c })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;
}

impl Highlighter for ReplHelper {}

impl Validator for ReplHelper {}

impl Helper for ReplHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_helpers_commands_and_names() {
        let h = ReplHelper { maps: vec!["counts".into()], progs: vec!["p".into()], ..Default::default() };
        assert_eq!(h.candidates(&["call"], "bpf_map_lo")[0], "bpf_map_lookup_elem");
        assert!(h.candidates(&[], ":lo").contains(&":load".to_owned()));
        assert_eq!(h.candidates(&[":map", "get"], "co"), vec!["counts"]);
        assert!(h.candidates(&["r1", "="], "map[c").contains(&"map[counts]".to_owned()));
        assert!(h.candidates(&[], "mov").contains(&"mov32".to_owned()));
    }

    #[test]
    fn completes_registers_and_program_names() {
        let h = ReplHelper { maps: vec!["hits".into()], progs: vec!["count".into(), "counter2".into()], ..Default::default() };
        // Registers, in instructions.
        let regs = h.candidates(&["r0", "="], "r");
        for r in ["r1", "r9", "r10"] {
            assert!(regs.contains(&r.to_owned()), "{r} in {regs:?}");
        }
        assert_eq!(h.candidates(&["*(u32", "*)(r10", "-", "4)", "="], "w9"), Vec::<String>::new(), "complete already");
        assert!(h.candidates(&["w0", "+="], "w").contains(&"w9".to_owned()));
        // Program names after the commands that take one.
        for cmd in [":load", ":run", ":info", ":attach", ":list"] {
            assert_eq!(h.candidates(&[cmd], "cou"), vec!["count", "counter2"], "{cmd}");
        }
        assert_eq!(h.candidates(&[":count"], "hi"), vec!["hits"]);
        assert_eq!(h.candidates(&[":trigger"], "u"), vec!["udp"]);
    }

    #[test]
    fn completes_kernel_btf_type_names() {
        if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
            // As tests/support's skip: under BPFKIT_REQUIRE_KERNEL=1 (CI) a skip fails.
            assert!(!std::env::var("BPFKIT_REQUIRE_KERNEL").is_ok_and(|v| v == "1"), "required but skipped: no kernel BTF");
            eprintln!("skipped: completes_kernel_btf_type_names: no /sys/kernel/btf/vmlinux");
            return;
        }
        let h = ReplHelper::default();
        let got = h.candidates(&[":btf"], "task_stru");
        assert_eq!(got.first().map(String::as_str), Some("task_struct"), "{got:?}");
        assert!(h.candidates(&[":watch", "events", "as"], "timespec6").contains(&"timespec64".to_owned()));
        assert!(h.candidates(&[":btf"], "bpfkit_no_such_type").is_empty());
    }
}
