//! Lab 9.3 — application sandboxing (tutorial/ch09-cgroups.md): a cgroup the lab creates gets
//! three policies, each refusing with EPERM and writing an audit record (pid, command name,
//! what was refused) to one ring buffer:
//! - `cgroup/dev`: no writing to /dev/null (char 1:3); reading it, and other devices, still work;
//! - `cgroup/sock_create`: no raw sockets (IPv4 or IPv6); other sockets still work;
//! - BPF-LSM `file_open`, for tasks of that cgroup only (`bpf_get_current_cgroup_id`): a "secret"
//!   file cannot be opened. On a kernel that refuses LSM programs (decided by trying to load
//!   one) the lab prints bpfkit's error and runs the first two; the 6.1 guest
//!   (`scripts/kernel2/run.sh lab_9_3`) runs all three.
//!
//! The sandboxed workload is this program itself, started again inside the cgroup with the
//! actions to try in `LAB_9_3_ACTIONS`; it reports each result as the process saw it (ok or the
//! errno). The lab, outside the cgroup, does the same things unhindered.
//!
//! Run as root: `cargo run --example lab_9_3`. The same code is a doctest of the chapter.

use std::os::unix::fs::MetadataExt;
use std::process::Stdio;
use bpfkit::attach::fentry::{BtfTarget, TracingHook};
use bpfkit::attach::{Link, ProbeError};
use bpfkit::bpf_asm;
use bpfkit::core_btf::{Btf, Kind};
use bpfkit::events::RingBuf;
use bpfkit::helpers::patterns::ctx_field;
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::os::{cgroup2_mount, Cgroup, CgroupRemover, Leftovers};
use bpfkit::prog::{AttachType, LoadOptions, ProgType, Program};
use socket2::{Domain, Protocol, Socket, Type};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Do one action and say how it went, as the process sees it: `ok` or `errno N`.
fn try_action(action: &str, secret: &str) -> String {
    let result = match action {
        "write /dev/null" => std::fs::OpenOptions::new().write(true).open("/dev/null").map(drop),
        "read /dev/null" => std::fs::File::open("/dev/null").map(drop),
        "write /dev/zero" => std::fs::OpenOptions::new().write(true).open("/dev/zero").map(drop),
        "raw socket" => Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).map(drop),
        "raw6 socket" => Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).map(drop),
        "udp socket" => Socket::new(Domain::IPV4, Type::DGRAM, None).map(drop),
        "open secret" => std::fs::File::open(secret).map(drop),
        other => return format!("unknown action {other:?}"),
    };
    match result {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("errno {}", e.raw_os_error().unwrap_or(0)),
    }
}

fn main() -> Result<(), Error> {
    // Started again inside the sandbox: do the actions, print the results, nothing else.
    if let (Ok(actions), Ok(secret)) = (std::env::var("LAB_9_3_ACTIONS"), std::env::var("LAB_9_3_SECRET")) {
        for action in actions.split(',') {
            println!("{action}: {}", try_action(action, &secret));
        }
        return Ok(());
    }
    if !bpfkit::features::can_use_bpf("Lab 9.3") {
        return Ok(());
    }
    // The audit log: kind u32 (1 device, 2 socket, 3 file) | pid u32 | detail u64 | comm [16].
    let audit = Map::create(&MapSpec::new("audit", MapType::RingBuf, 0, 0, 64 << 10))?;
    // An audit record from r8 (kind) and r9 (detail); then refuse (what refusing means differs:
    // `refuse` is the return value the hook wants).
    let audit_and_refuse = |refuse: i32| {
        bpf_asm! {
            r1 = map[audit] ll
            r2 = 32
            r3 = 0
            call bpf_ringbuf_reserve
            if r0 == 0 goto refuse
            r7 = r0
            *(u32 *)(r7 + 0) = w8
            *(u64 *)(r7 + 8) = r9
            call bpf_get_current_pid_tgid
            r0 >>= 32
            *(u32 *)(r7 + 4) = w0
            r1 = r7
            r1 += 16
            r2 = 16
            call bpf_get_current_comm
            r1 = r7
            r2 = 0
            call bpf_ringbuf_submit
        refuse:
            r0 = {refuse}
            exit
        }
    };

    // cgroup/dev: ctx is {access_type = access << 16 | type, major, minor}; 1 allows, 0 refuses.
    let (access_type, major, minor) = (ctx_field(ProgType::CgroupDevice, "access_type")?, ctx_field(ProgType::CgroupDevice, "major")?, ctx_field(ProgType::CgroupDevice, "minor")?);
    let (char_dev, write) = (2, 4); // BPF_DEVCG_DEV_CHAR, BPF_DEVCG_ACC_WRITE
    let device = bpf_asm! {
        r2 = *(u32 *)(r1 + {access_type})
        r3 = r2
        r3 &= 0xffff
        if r3 != {char_dev} goto allow
        r2 >>= 16
        r2 &= {write}
        if r2 == 0 goto allow                     // not a write
        r4 = *(u32 *)(r1 + {major})
        if r4 != 1 goto allow
        r5 = *(u32 *)(r1 + {minor})
        if r5 != 3 goto allow                     // not 1:3, /dev/null
        r8 = 1
        r9 = r4
        r9 <<= 32
        r9 |= r5                                  // detail: major << 32 | minor
        {audit_and_refuse(0)}
    allow:
        r0 = 1
        exit
    };
    let opts = LoadOptions::new("no_null_write", ProgType::CgroupDevice).expected_attach_type(AttachType::CgroupDevice);
    let device = Program::load(&device.assemble()?, &[&audit], &opts)?;

    // cgroup/sock_create: ctx is a struct bpf_sock (family, type, protocol); 1 allows, 0 refuses.
    let (family, sock_type, protocol) = (ctx_field(ProgType::CgroupSock, "family")?, ctx_field(ProgType::CgroupSock, "type")?, ctx_field(ProgType::CgroupSock, "protocol")?);
    let sock = bpf_asm! {
        r2 = *(u32 *)(r1 + {sock_type})
        if r2 != {libc::SOCK_RAW} goto allow
        r8 = 2
        r9 = *(u32 *)(r1 + {family})
        r9 <<= 32
        r3 = *(u32 *)(r1 + {protocol})
        r9 |= r3                                  // detail: family << 32 | protocol
        {audit_and_refuse(0)}
    allow:
        r0 = 1
        exit
    };
    let opts = LoadOptions::new("no_raw_sockets", ProgType::CgroupSock).expected_attach_type(AttachType::CgroupInetSockCreate);
    let sock = Program::load(&sock.assemble()?, &[&audit], &opts)?;

    // The sandbox, and a secret file only it may not open. Ctrl-C removes both (the handler is
    // in place before either exists).
    let dir = tempfile::tempdir()?;
    let name = format!("bpfkit-lab-9-3-{}", std::process::id());
    let (remover, scratch) = (CgroupRemover::for_path(cgroup2_mount()?.join(&name), Leftovers::Kill), dir.path().to_path_buf());
    ctrlc::set_handler(move || {
        let _ = remover.remove();
        let _ = std::fs::remove_dir_all(&scratch);
        std::process::exit(130);
    })?;
    let cgroup = Cgroup::create(&name)?;
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "the sandbox may not read this\n")?;
    let secret_ino = std::fs::metadata(&secret)?.ino() as i64;

    // BPF-LSM file_open (args: struct file *): -EPERM when a task of the sandbox opens the secret.
    let btf = Btf::vmlinux()?;
    let member = |ty: &str, field: &str| -> Result<i16, Error> {
        let id = btf.find_by_name_kind(ty, Kind::Struct).ok_or(format!("no struct {ty} in BTF"))?;
        Ok((btf.member_offset(id, field)? / 8) as i16)
    };
    let (f_inode, i_ino) = (member("file", "f_inode")?, member("inode", "i_ino")?);
    let sandbox_id = cgroup.id() as i64;
    let file_open = bpf_asm! {
        r6 = r1
        call bpf_get_current_cgroup_id
        r1 = {sandbox_id} ll
        if r0 != r1 goto allow                    // only inside the sandbox
        r1 = *(u64 *)(r6 + 0)                     // the struct file *
        r1 = *(u64 *)(r1 + {f_inode})
        r9 = *(u64 *)(r1 + {i_ino})
        r1 = {secret_ino} ll
        if r9 != r1 goto allow
        r8 = 3                                    // detail: the inode
        {audit_and_refuse(-libc::EPERM)}
    allow:
        r0 = 0
        exit
    };
    let lsm = match BtfTarget::find(TracingHook::Lsm, "file_open")?.load(&file_open.assemble()?, &[&audit], "sandbox_open") {
        Ok(prog) => Some(prog),
        Err(e @ ProbeError::TracingRefused { .. }) => {
            println!("LSM half: {e}\n  (it runs in the 6.1 guest: scripts/kernel2/run.sh lab_9_3)");
            None
        }
        Err(e) => return Err(e.into()),
    };
    // Loading is not enough: the kernel must run "bpf" among its LSMs (when securityfs, which
    // says so, is not mounted, the sandbox's refused open below is the test).
    let bpf_lsm_active = std::fs::read_to_string("/sys/kernel/security/lsm").map(|l| l.split(',').any(|m| m.trim() == "bpf")).unwrap_or(true);
    if lsm.is_some() && !bpf_lsm_active {
        return Err("LSM programs load here, but bpf is not an active LSM (/sys/kernel/security/lsm): boot with lsm=...,bpf".into());
    }

    let mut links = vec![device.attach_cgroup(&cgroup, AttachType::CgroupDevice)?, sock.attach_cgroup(&cgroup, AttachType::CgroupInetSockCreate)?];
    if let Some(prog) = &lsm {
        links.push(prog.attach_btf()?);
    }
    let mut actions = vec!["write /dev/null", "read /dev/null", "write /dev/zero", "raw socket", "raw6 socket", "udp socket"];
    if lsm.is_some() {
        actions.push("open secret");
    }
    let refused = |action: &str| matches!(action, "write /dev/null" | "raw socket" | "raw6 socket" | "open secret");

    // Inside: this program again, in the sandbox from its first instruction.
    let child = cgroup
        .command(std::env::current_exe()?)?
        .env("LAB_9_3_ACTIONS", actions.join(","))
        .env("LAB_9_3_SECRET", &secret)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    let child_pid = child.id();
    let out = child.wait_with_output()?;
    let inside = String::from_utf8(out.stdout)?;
    println!("inside the sandbox (pid {child_pid}):");
    for (line, action) in inside.lines().zip(&actions) {
        println!("  {line}");
        let want = if refused(action) { format!("{action}: errno {}", libc::EPERM) } else { format!("{action}: ok") };
        assert_eq!(line, want);
    }
    assert_eq!(inside.lines().count(), actions.len(), "every action reported: {inside}");

    // Outside, the same actions are all allowed.
    println!("outside (the lab, pid {}):", std::process::id());
    for action in &actions {
        let result = try_action(action, &secret.to_string_lossy());
        println!("  {action}: {result}");
        assert_eq!(result, "ok", "{action} outside the sandbox");
    }

    // The audit log: one record per refusal, each the child's.
    let mut kinds = Vec::new();
    for record in RingBuf::new(&audit)?.read_all() {
        let kind = u32::from_ne_bytes(record[0..4].try_into()?);
        let pid = u32::from_ne_bytes(record[4..8].try_into()?);
        let detail = u64::from_ne_bytes(record[8..16].try_into()?);
        let comm = String::from_utf8_lossy(&record[16..32]).trim_end_matches('\0').to_string();
        let what = match kind {
            1 => format!("device write to char {}:{}", detail >> 32, detail as u32),
            2 => format!("raw socket, family {} protocol {}", detail >> 32, detail as u32),
            _ => format!("open of inode {detail} ({})", secret.display()),
        };
        println!("audit: pid {pid} ({comm}): {what} refused");
        assert_eq!(pid, child_pid, "refused for the sandboxed process only");
        kinds.push(kind);
    }
    let mut want = vec![1, 2, 2];
    if lsm.is_some() {
        want.push(3);
    }
    assert_eq!(kinds, want, "one audit record per refusal, in order");
    // Clean-up, checked: the links detach and the cgroup goes (on an error, drop does the same;
    // on Ctrl-C, the remover).
    let link_ids = links.iter().map(|l| Ok(l.info()?.id)).collect::<Result<Vec<u32>, Error>>()?;
    let path = cgroup.path().to_path_buf();
    drop(links);
    cgroup.remove()?;
    let alive = Link::all_ids()?;
    assert!(!path.exists() && link_ids.iter().all(|id| !alive.contains(id)), "nothing left behind");
    println!("clean-up: links {link_ids:?} and {} removed", path.display());
    Ok(())
}
