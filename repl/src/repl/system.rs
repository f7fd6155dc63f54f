//! REPL commands about the system rather than the session: the `bpfkit` subcommands
//! (`prog`, `map`, `link`, `btf`, `features`), parsed by the same clap parser as the command
//! line and run by the same code, and `:helper`.

use std::io::Write;

use clap::Parser;

use crate::error::CliError;
use super::session::{say, Outcome};
use crate::cli::Cli;
use crate::commands;

/// Run `bpfkit SUBCOMMAND ARGS…` as if typed on the command line, output to `out`.
pub fn subcommand(name: &str, args: &[&str], out: &mut dyn Write) -> Outcome {
    let argv = ["bpfkit", name].into_iter().chain(args.iter().copied());
    match Cli::try_parse_from(argv) {
        // The subcommand's own error, unchanged: the REPL and the command line share it.
        Ok(Cli { command: Some(command), .. }) => commands::run(command, out),
        Ok(_) => Err(format!("`{name}` needs arguments").into()),
        // `--help` is not a failure.
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {
            write!(out, "{e}").map_err(|e| CliError::Message(format!("cannot write output: {e}")))
        }
        Err(e) => Err(e.to_string().trim_end().trim_start_matches("error: ").to_owned().into()),
    }
}

/// `:helper NAME|ID`: id, prototype, and the release it appeared in.
pub fn helper(args: &[&str], out: &mut dyn Write) -> Outcome {
    let [arg] = args else {
        return Err("usage: :helper NAME|ID (e.g. :helper map_lookup_elem)".into());
    };
    let h = match arg.parse::<u32>() {
        Ok(id) => bpfkit::helpers::by_id(id),
        Err(_) => bpfkit::helpers::by_name(arg),
    }
    .ok_or_else(|| format!("no helper `{arg}` in this kernel's enum bpf_func_id"))?;
    say!(out, "helper {} {}", h.id, h.name);
    if let Some(sig) = h.sig {
        say!(out, "  {}", sig.prototype());
    }
    if let Some(v) = h.since {
        say!(out, "  since Linux {v}");
    }
    Ok(())
}

/// `:btf TYPE…`: `bpfkit btf dump TYPE…`.
pub fn btf(args: &[&str], out: &mut dyn Write) -> Outcome {
    if args.is_empty() {
        return Err("usage: :btf TYPE… | :btf members TYPE | :btf path TYPE->member[->member…] (e.g. :btf path task_struct->mm->arg_start)".into());
    }
    // `members` and `path` are the explorer's own subcommands; anything else names types.
    let mut full = match args[0] {
        "members" | "path" => vec![],
        _ => vec!["dump"],
    };
    if args[0] == "path" {
        // `task_struct -> mm` typed with spaces is one path.
        let expr = args[1..].concat();
        full.extend(["path", expr.as_str()]);
        return subcommand("btf", &full, out);
    }
    full.extend_from_slice(args);
    subcommand("btf", &full, out)
}
