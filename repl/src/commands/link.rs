//! `bpfkit link`: the bpf_links in the kernel — list them, show one, detach one.

use std::io::Write;

use bpfkit::attach::{Link, LinkError, LinkInfo};
use bpfkit::os::SysError;

use super::prog::{is_not_found, table, Target};
use crate::error::CliError;
use crate::io::write_output;

/// The arguments of `bpfkit link` (its help text is on [`super::Command::Link`]).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: LinkCommand,
}

/// What `bpfkit link` does.
#[derive(Debug, clap::Subcommand)]
pub enum LinkCommand {
    /// One line per bpf_link, by id: `ID TYPE prog PROG_ID`.
    List,
    /// The `list` line of one link.
    Show {
        /// A link id, or the path it is pinned at on a bpffs.
        #[arg(value_name = "ID|PATH")]
        target: Target,
    },
    /// Detach a link now (`BPF_LINK_DETACH`): its program stops running even while pins or
    /// other fds still hold the link.
    Detach {
        /// A link id, or the path it is pinned at on a bpffs.
        #[arg(value_name = "ID|PATH")]
        target: Target,
    },
}

fn row(info: &LinkInfo) -> Vec<String> {
    let kind = match info.link_type {
        Some(t) => t.to_string(),
        None => format!("type({})", info.raw_type),
    };
    vec![info.id.to_string(), kind, "prog".into(), info.prog_id.to_string()]
}

fn open(target: &Target) -> Result<Link, CliError> {
    match target {
        Target::Id(id) => Link::from_id(*id).map_err(|e| match e {
            LinkError::Sys(SysError { source, .. }) if is_not_found(&source) => CliError::NoSuchId { kind: "link", id: *id },
            e => CliError::Link(e),
        }),
        Target::Pinned(path) => Link::from_pin(path).map_err(CliError::Link),
    }
}

fn list_rows() -> Result<Vec<Vec<String>>, CliError> {
    let mut rows = Vec::new();
    for id in Link::all_ids().map_err(CliError::Link)? {
        match Link::from_id(id) {
            // Links may go away between listing and opening.
            Err(LinkError::Sys(SysError { source, .. })) if is_not_found(&source) => {}
            Err(e) => return Err(CliError::Link(e)),
            Ok(link) => rows.push(row(&link.info().map_err(CliError::Link)?)),
        }
    }
    Ok(rows)
}

pub fn run(args: &Args, stdout: &mut dyn Write) -> Result<(), CliError> {
    let out = match &args.command {
        LinkCommand::List => table(&list_rows()?),
        LinkCommand::Show { target } => table(&[row(&open(target)?.info().map_err(CliError::Link)?)]),
        LinkCommand::Detach { target } => {
            let link = open(target)?;
            let info = link.info().map_err(CliError::Link)?;
            link.detach().map_err(|e| match e {
                LinkError::Sys(s) if s.source.kind() == std::io::ErrorKind::Unsupported => CliError::Link(LinkError::Target {
                    what: s.op.clone(),
                    message: "this kind of link cannot be detached by id (EOPNOTSUPP); it goes away when its pins are removed and every fd holding it is closed".into(),
                }),
                e => CliError::Link(e),
            })?;
            format!("detached link {} ({})\n", info.id, row(&info)[1])
        }
    };
    write_output(None, stdout, out.as_bytes())
}
