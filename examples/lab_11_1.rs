//! Lab 11.1 — file access control with BPF-LSM (tutorial/ch11-lsm.md): a program on the
//! `file_open` LSM hook denies one file, identified by its device and inode, to one user
//! (`nobody`). A `cat` of that file as `nobody` fails with EPERM, the same file opens for root and
//! another file opens for `nobody`; every denial is logged through a ring buffer with pid, uid,
//! inode and command name. Kernels without BPF trampolines (this host) refuse LSM programs: the lab
//! then prints bpfkit's error and the kernel's probe verdict; it runs in full in the 6.1 guest
//! (`scripts/kernel2/run.sh lab_11_1`).
//!
//! Run as root: `cargo run --example lab_11_1`. The same code is a doctest of the chapter.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !bpfkit::features::can_use_bpf("Lab 11.1") {
        return Ok(());
    }
    const NOBODY: u32 = 65534;
    const EPERM: i32 = 1;
    // Policy: {ino, dev} → the uid the file is denied to. dev in the kernel's encoding.
    let protected = Map::create(&MapSpec::new("protected", MapType::Hash, 16, 4, 64))?;
    let denials = Map::create(&MapSpec::new("denials", MapType::RingBuf, 0, 0, 64 * 1024))?;
    let read = |hops: &[(&str, &str)], size: Size| core_read(Reg::R7, Reg::R6, &hops.iter().map(|&(t, p)| Hop::new(t, p)).collect::<Vec<_>>(), size, -24, Reg::R8);
    let prog = bpf_asm! {
        r6 = *(u64 *)(r1 + 0)                       // file_open(struct file *file)
        {read(&[("file", "f_inode"), ("inode", "i_ino")], Size::DW)?}
        *(u64 *)(r10 - 16) = r7                     // key.ino
        {read(&[("file", "f_inode"), ("inode", "i_sb"), ("super_block", "s_dev")], Size::W)?}
        *(u64 *)(r10 - 8) = r7                      // key.dev
        r1 = map[protected] ll
        r2 = r10
        r2 += -16
        call bpf_map_lookup_elem
        if r0 == 0 goto allow                       // not a protected file
        r9 = *(u32 *)(r0 + 0)                       // the uid it is denied to
        call bpf_get_current_uid_gid
        w0 = w0
        if r0 != r9 goto allow
        r1 = map[denials] ll                        // log: {pid, uid, ino, comm[16]}
        r2 = 32
        r3 = 0
        call bpf_ringbuf_reserve
        if r0 == 0 goto deny                        // a full log never lets the open through
        r7 = r0
        call bpf_get_current_pid_tgid
        r0 >>= 32
        *(u32 *)(r7 + 0) = w0
        *(u32 *)(r7 + 4) = w9
        r1 = *(u64 *)(r10 - 16)
        *(u64 *)(r7 + 8) = r1
        r1 = r7
        r1 += 16
        r2 = 16
        call bpf_get_current_comm
        r1 = r7
        r2 = 0
        call bpf_ringbuf_submit
    deny:
        r0 = -{EPERM}
        exit
    allow:
        r0 = 0
        exit
    };
    let hook = BtfTarget::find(TracingHook::Lsm, "file_open")?;
    let prog = match hook.load(&prog.assemble()?, &[&protected, &denials], "deny_file") {
        Ok(p) => p,
        Err(e @ ProbeError::TracingRefused { .. }) => {
            // The kernel's own answer, by probe (the suite checks these probes against bpftool).
            let verdict = bpfkit::features::Features::global().prog_type_libbpf(ProgType::Lsm)?;
            let said = verdict.supported.map_or("unknown", |yes| if yes { "yes" } else { "no" });
            println!("{e}\nprobe: lsm programs on this kernel: {said} ({}: {})", verdict.method, verdict.detail);
            assert_eq!(verdict.supported, Some(false), "bpfkit refused what the kernel's probe accepts");
            println!("Lab 11.1 runs in full in the 6.1 guest: scripts/kernel2/run.sh lab_11_1");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };

    // The files, removed however the lab ends (Ctrl-C: the handler removes them too).
    struct Scratch(std::path::PathBuf);
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let dir = Scratch(std::env::temp_dir().join(format!("bpfkit-lab11-1-{}", std::process::id())));
    std::fs::create_dir(&dir.0)?;
    let cleanup = dir.0.clone();
    ctrlc::set_handler(move || {
        let _ = std::fs::remove_dir_all(&cleanup);
        std::process::exit(130);
    })?;
    let (secret, public) = (dir.0.join("secret"), dir.0.join("public"));
    for f in [&secret, &public] {
        std::fs::write(f, "lab 11.1\n")?;
        std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    }
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    // stat's st_dev is user space's encoding of the device; the kernel's dev_t is major << 20 | minor.
    let meta = std::fs::metadata(&secret)?;
    let dev = bpfkit::os::kernel_dev(meta.dev());
    let (major, minor) = (dev >> 20, dev & 0xfffff);
    let key: [u64; 2] = [meta.ino(), dev];
    protected.typed::<[u64; 2], u32>()?.insert(&key, &NOBODY, UpdateFlags::Any)?;
    println!("policy: {} (dev {major}:{minor}, inode {}) denied to uid {NOBODY}", secret.display(), meta.ino());

    let link = prog.attach_btf()?;
    let cat = |path: &std::path::Path, uid: u32| Command::new("cat").arg(path).uid(uid).gid(uid).output();
    let denied = cat(&secret, NOBODY)?;
    let stderr = String::from_utf8_lossy(&denied.stderr);
    println!("cat secret as nobody: exit {:?}, {}", denied.status.code(), stderr.trim());
    assert!(!denied.status.success() && stderr.contains(&std::io::Error::from_raw_os_error(EPERM).to_string().replace(" (os error 1)", "")), "{stderr}");
    let as_root = cat(&secret, 0)?;
    println!("cat secret as root:   exit {:?}, {:?}", as_root.status.code(), String::from_utf8_lossy(&as_root.stdout));
    assert!(as_root.status.success() && as_root.stdout == b"lab 11.1\n");
    let other = cat(&public, NOBODY)?;
    println!("cat public as nobody: exit {:?}, {:?}", other.status.code(), String::from_utf8_lossy(&other.stdout));
    assert!(other.status.success() && other.stdout == b"lab 11.1\n");

    let mut log = Vec::new();
    let mut ring = RingBuf::new(&denials)?;
    ring.poll(Some(Duration::from_millis(500)), |r| log.push(r.to_vec()))?;
    for r in &log {
        let u32_at = |o: usize| u32::from_ne_bytes(r[o..o + 4].try_into().unwrap_or_default());
        let ino = u64::from_ne_bytes(r[8..16].try_into().unwrap_or_default());
        let comm = String::from_utf8_lossy(&r[16..32]).trim_end_matches('\0').to_string();
        println!("denied: pid {} uid {} inode {ino} comm {comm}", u32_at(0), u32_at(4));
        assert_eq!((u32_at(4), ino, comm.as_str()), (NOBODY, meta.ino(), "cat"));
    }
    assert_eq!(log.len(), 1, "one denial, logged once");
    drop(link);
    assert!(cat(&secret, NOBODY)?.status.success(), "detached: the file opens again");
    println!("detached: cat secret as nobody works again");
    Ok(())
}
