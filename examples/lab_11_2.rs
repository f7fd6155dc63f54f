//! Lab 11.2 — an execution guardian (tutorial/ch11-lsm.md): a program on the
//! `bprm_check_security` LSM hook lets the user `nobody` execute only the files of an allow-list,
//! identified by device and inode. A file enters the list when the policy is loaded and only if
//! its SHA-256 equals the digest the policy expects. As `nobody`, the listed copy of `true` runs;
//! an unlisted copy and a copy altered before the policy was loaded fail with EPERM; root is not
//! affected. Every denial is logged with the file name. The lab also shows what a digest checked
//! at load time does not protect against: the listed file, changed afterwards, still runs.
//! Kernels without BPF trampolines (this host) refuse LSM programs: the lab then prints bpfkit's
//! error and the probe's verdict; it runs in full in the 6.1 guest
//! (`scripts/kernel2/run.sh lab_11_2`).
//!
//! Run as root: `cargo run --example lab_11_2`. The same code is a doctest of the chapter.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use bpfkit::attach::fentry::{BtfTarget, TracingHook};
use bpfkit::attach::ProbeError;
use bpfkit::bpf_asm;
use bpfkit::events::RingBuf;
use bpfkit::helpers::core_read::{core_read, Hop};
use bpfkit::insn::{Reg, Size};
use bpfkit::maps::{Map, MapSpec, MapType, UpdateFlags};
use bpfkit::prog::ProgType;
use sha2::{Digest, Sha256};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !bpfkit::features::can_use_bpf("Lab 11.2") {
        return Ok(());
    }
    const NOBODY: u32 = 65534;
    const EPERM: i32 = 1;
    const NAME: i32 = 64; // bytes of the file name kept in the log
    // The allow-list: {ino, dev} → 1. dev in the kernel's encoding.
    let allowed = Map::create(&MapSpec::new("allowed_exec", MapType::Hash, 16, 4, 256))?;
    let denials = Map::create(&MapSpec::new("exec_denials", MapType::RingBuf, 0, 0, 64 * 1024))?;
    let read = |hops: &[(&str, &str)], size: Size| core_read(Reg::R7, Reg::R6, &hops.iter().map(|&(t, p)| Hop::new(t, p)).collect::<Vec<_>>(), size, -24, Reg::R8);
    let prog = bpf_asm! {
        r6 = *(u64 *)(r1 + 0)                       // bprm_check_security(struct linux_binprm *bprm)
        call bpf_get_current_uid_gid                // the credentials doing the execve
        w0 = w0
        if r0 != {NOBODY as i32} goto allow         // the policy covers one user
        {read(&[("linux_binprm", "file"), ("file", "f_inode"), ("inode", "i_ino")], Size::DW)?}
        *(u64 *)(r10 - 16) = r7
        {read(&[("linux_binprm", "file"), ("file", "f_inode"), ("inode", "i_sb"), ("super_block", "s_dev")], Size::W)?}
        *(u64 *)(r10 - 8) = r7
        r1 = map[allowed_exec] ll
        r2 = r10
        r2 += -16
        call bpf_map_lookup_elem
        if r0 != 0 goto allow
        r1 = map[exec_denials] ll                   // log: {pid, uid, ino, name[64]}
        r2 = {16 + NAME}
        r3 = 0
        call bpf_ringbuf_reserve
        if r0 == 0 goto deny
        r9 = r0
        call bpf_get_current_pid_tgid
        r0 >>= 32
        *(u32 *)(r9 + 0) = w0
        *(u32 *)(r9 + 4) = {NOBODY as i32}
        r1 = *(u64 *)(r10 - 16)
        *(u64 *)(r9 + 8) = r1
        {read(&[("linux_binprm", "filename")], Size::DW)?}
        r1 = r9                                     // the name as execve was given it
        r1 += 16
        r2 = {NAME}
        r3 = r7
        call bpf_probe_read_kernel_str
        r1 = r9
        r2 = 0
        call bpf_ringbuf_submit
    deny:
        r0 = -{EPERM}
        exit
    allow:
        r0 = 0
        exit
    };
    let hook = BtfTarget::find(TracingHook::Lsm, "bprm_check_security")?;
    let prog = match hook.load(&prog.assemble()?, &[&allowed, &denials], "exec_guardian") {
        Ok(p) => p,
        Err(e @ ProbeError::TracingRefused { .. }) => {
            // The kernel's own answer, by probe (the suite checks these probes against bpftool).
            let verdict = bpfkit::features::Features::global().prog_type_libbpf(ProgType::Lsm)?;
            let said = verdict.supported.map_or("unknown", |yes| if yes { "yes" } else { "no" });
            println!("{e}\nprobe: lsm programs on this kernel: {said} ({}: {})", verdict.method, verdict.detail);
            assert_eq!(verdict.supported, Some(false), "bpfkit refused what the kernel's probe accepts");
            println!("Lab 11.2 runs in full in the 6.1 guest: scripts/kernel2/run.sh lab_11_2");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };

    // Three copies of `true` (busybox in the guest: it picks the applet by argv[0]), removed
    // however the lab ends.
    struct Scratch(PathBuf);
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let dir = Scratch(std::env::temp_dir().join(format!("bpfkit-lab11-2-{}", std::process::id())));
    std::fs::create_dir(&dir.0)?;
    std::fs::set_permissions(&dir.0, PermissionsExt::from_mode(0o755))?;
    let cleanup = dir.0.clone();
    ctrlc::set_handler(move || {
        let _ = std::fs::remove_dir_all(&cleanup);
        std::process::exit(130);
    })?;
    let hex = |bytes: &[u8]| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
    let original = std::fs::canonicalize("/bin/true")?;
    let published = hex(&Sha256::digest(std::fs::read(&original)?)); // the digest the policy expects
    let copy = |name: &str| -> std::io::Result<PathBuf> {
        let p = dir.0.join(name);
        std::fs::copy(&original, &p)?;
        std::fs::set_permissions(&p, PermissionsExt::from_mode(0o755))?;
        Ok(p)
    };
    let (listed, unlisted, tampered) = (copy("listed")?, copy("unlisted")?, copy("tampered")?);
    std::fs::OpenOptions::new().append(true).open(&tampered)?.write_all(b"\0")?; // altered before the policy

    // Loading the policy: each file's digest is checked now, once.
    for path in [&listed, &tampered] {
        let digest = hex(&Sha256::digest(std::fs::read(path)?));
        if digest != published {
            println!("policy: {} NOT listed: sha256 {}… is not the expected {}…", path.display(), &digest[..16], &published[..16]);
            continue;
        }
        let meta = std::fs::metadata(path)?;
        // The kernel compares its own encoding of the device (major << 20 | minor), not stat's.
        allowed.typed::<[u64; 2], u32>()?.insert(&[meta.ino(), bpfkit::os::kernel_dev(meta.dev())], &1, UpdateFlags::Any)?;
        println!("policy: {} listed (inode {}, sha256 {}…)", path.display(), meta.ino(), &digest[..16]);
    }

    let link = prog.attach_btf()?;
    let run = |path: &Path, uid: u32| Command::new(path).arg0("true").uid(uid).gid(uid).status();
    let status = run(&listed, NOBODY)?;
    println!("nobody runs listed:   {status}");
    assert!(status.success());
    for path in [&unlisted, &tampered] {
        let err = run(path, NOBODY).err().ok_or_else(|| format!("{} ran", path.display()))?;
        println!("nobody runs {:<9} {err}", format!("{}:", path.file_name().and_then(|n| n.to_str()).unwrap_or("?")));
        assert_eq!(err.raw_os_error(), Some(EPERM));
    }
    assert!(run(&unlisted, 0)?.success(), "root is not covered by the policy");
    println!("root runs unlisted:   allowed (the policy covers uid {NOBODY} only)");
    // What a digest checked at load time does not see: the listed file changed afterwards
    // keeps its inode, and still runs.
    std::fs::OpenOptions::new().append(true).open(&listed)?.write_all(b"\0")?;
    let after = run(&listed, NOBODY)?;
    println!("listed, changed after the policy was loaded: {after} (same inode: still allowed)");
    assert!(after.success());

    let mut log = Vec::new();
    RingBuf::new(&denials)?.poll(Some(Duration::from_millis(500)), |r| log.push(r.to_vec()))?;
    let mut names = Vec::new();
    for r in &log {
        let name = String::from_utf8_lossy(&r[16..]).trim_end_matches('\0').to_string();
        println!("denied: pid {} uid {} inode {} {name}", u32::from_ne_bytes(r[0..4].try_into()?), u32::from_ne_bytes(r[4..8].try_into()?), u64::from_ne_bytes(r[8..16].try_into()?));
        names.push(name);
    }
    assert_eq!(names, vec![unlisted.display().to_string(), tampered.display().to_string()]);
    drop(link);
    Ok(())
}
