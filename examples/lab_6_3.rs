//! Lab 6.3 — a block I/O monitor (tutorial/ch06-tracepoints.md): `block:block_rq_issue` stamps
//! each request with the time and its size, `block:block_rq_complete` turns the stamp into
//! latency, and both count requests and bytes per device and direction, with a log2 latency
//! histogram per device. The lab makes a loop device over a file, issues O_DIRECT reads and
//! writes of known sizes on it, and checks the loop device's requests and bytes are exactly those.
//!
//! Run as root: `cargo run --example lab_6_3`. The same code is a doctest of the chapter.

use bpfkit::attach::TracepointFormat;
use bpfkit::bpf_asm;
use bpfkit::helpers::patterns::{counter_increment, map_lookup};
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program};
use std::collections::BTreeMap;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::process::Command;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !bpfkit::features::can_use_bpf("Lab 6.3") {
        return Ok(());
    }
    let issue = TracepointFormat::read("block", "block_rq_issue")?;
    let done = TracepointFormat::read("block", "block_rq_complete")?;
    let (dev, sector, bytes, rwbs) = (issue.offset_of("dev")?, issue.offset_of("sector")?, issue.offset_of("bytes")?, issue.offset_of("rwbs")?);
    let (done_dev, done_sector) = (done.offset_of("dev")?, done.offset_of("sector")?);
    // {dev, sector} -> {issued at (ns), bytes, direction}
    let inflight = Map::create(&MapSpec::new("inflight", MapType::Hash, 16, 16, 4096))?;
    // {dev, direction} -> {requests, bytes, total latency (ns)}
    let stats = Map::create(&MapSpec::new("io_stats", MapType::Hash, 8, 24, 256))?;
    // {dev, log2 of the latency in µs} -> requests
    let hist = Map::create(&MapSpec::new("io_usecs", MapType::Hash, 8, 8, 1024))?;
    let on_issue = bpf_asm! {
        r2 = *(u32 *)(r1 + {dev})           // dev_t, the kernel's encoding: major << 20 | minor
        *(u32 *)(r10 - 16) = w2
        *(u32 *)(r10 - 12) = 0
        r2 = *(u64 *)(r1 + {sector})
        *(u64 *)(r10 - 8) = r2
        r2 = *(u32 *)(r1 + {bytes})
        *(u32 *)(r10 - 24) = w2
        r2 = *(u8 *)(r1 + {rwbs})           // 'R' read, 'W' write, 'F' flush, 'D' discard, …
        *(u32 *)(r10 - 20) = w2
        call bpf_ktime_get_ns
        *(u64 *)(r10 - 32) = r0
        r1 = map[inflight] ll
        r2 = r10
        r2 += -16
        r3 = r10
        r3 += -32
        r4 = 0
        call bpf_map_update_elem
        r0 = 0
        exit
    };
    let on_complete = bpf_asm! {
        r2 = *(u32 *)(r1 + {done_dev})
        *(u32 *)(r10 - 16) = w2
        *(u32 *)(r10 - 12) = 0
        r2 = *(u64 *)(r1 + {done_sector})
        *(u64 *)(r10 - 8) = r2
        {map_lookup("inflight", -16, "out")?}   // issued before we watched
        r9 = *(u64 *)(r0 + 0)               // issued at
        r7 = *(u32 *)(r0 + 8)               // bytes
        r8 = *(u32 *)(r0 + 12)              // direction
        call bpf_ktime_get_ns
        r6 = r0
        r6 -= r9                            // latency (ns); r6-r9 survive the calls below
        r1 = map[inflight] ll
        r2 = r10
        r2 += -16
        call bpf_map_delete_elem
        *(u32 *)(r10 - 12) = w8             // stats key {dev, direction} at r10-16
        r1 = map[io_stats] ll
        r2 = r10
        r2 += -16
        call bpf_map_lookup_elem
        if r0 != 0 goto add
        *(u64 *)(r10 - 40) = 0
        *(u64 *)(r10 - 32) = 0
        *(u64 *)(r10 - 24) = 0
        r1 = map[io_stats] ll
        r2 = r10
        r2 += -16
        r3 = r10
        r3 += -40
        r4 = 1                              // BPF_NOEXIST: another CPU may have made it
        call bpf_map_update_elem
        {map_lookup("io_stats", -16, "out")?}
    add:
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
        lock *(u64 *)(r0 + 8) += r7
        lock *(u64 *)(r0 + 16) += r6
        r6 /= 1000                          // µs
        r5 = 0                              // r5 = log2(r6)
    halve:
        if r6 <= 1 goto counted
        r6 >>= 1
        r5 += 1
        goto halve
    counted:
        *(u32 *)(r10 - 12) = w5             // histogram key {dev, bucket}
        {counter_increment("io_usecs", -16, -48)?}
    out:
        r0 = 0
        exit
    };
    let maps = [&inflight, &stats, &hist];
    let on_issue = Program::load(&on_issue.assemble()?, &maps, &LoadOptions::new("rq_issue", ProgType::Tracepoint))?;
    let on_complete = Program::load(&on_complete.assemble()?, &maps, &LoadOptions::new("rq_complete", ProgType::Tracepoint))?;

    // A loop device over a 64 MiB file; detached (and the file removed) when dropped.
    struct LoopDevice {
        path: String,
        backing: tempfile::NamedTempFile,
    }
    impl Drop for LoopDevice {
        fn drop(&mut self) {
            let _ = Command::new("losetup").args(["--detach", &self.path]).status();
        }
    }
    let backing = tempfile::NamedTempFile::new()?;
    backing.as_file().set_len(64 << 20)?;
    let out = Command::new("losetup").args(["--find", "--show", "--direct-io=on"]).arg(backing.path()).output()?;
    if !out.status.success() {
        return Err(format!("losetup: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let device = LoopDevice { path: String::from_utf8(out.stdout)?.trim().to_string(), backing };
    // Ctrl-C skips destructors: detach the device and remove its file there too.
    let (dev_path, file_path) = (device.path.clone(), device.backing.path().to_path_buf());
    ctrlc::set_handler(move || {
        let _ = Command::new("losetup").args(["--detach", &dev_path]).status();
        let _ = std::fs::remove_file(&file_path);
        std::process::exit(130);
    })?;
    let name = device.path.trim_start_matches("/dev/").to_string();
    let (major, minor) = std::fs::read_to_string(format!("/sys/block/{name}/dev"))?.trim().split_once(':').map(|(a, b)| (a.parse::<u32>(), b.parse::<u32>())).ok_or("no major:minor")?;
    let loop_dev = major? << 20 | minor?;
    // The disk under the backing file (a partition's requests are traced on its whole disk).
    let st_dev = std::fs::metadata(device.backing.path())?.dev();
    let sys = std::path::PathBuf::from(format!("/sys/dev/block/{}:{}", libc::major(st_dev), libc::minor(st_dev)));
    let disk_dir = if sys.join("partition").exists() { sys.join("..") } else { sys };
    let backing_dev = std::fs::read_to_string(disk_dir.join("dev")).ok().and_then(|t| {
        let (a, b) = t.trim().split_once(':')?;
        Some(a.parse::<u32>().ok()? << 20 | b.parse::<u32>().ok()?)
    });

    let disk = std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_DIRECT).open(&device.path)?;
    // O_DIRECT wants the buffer, offset and length aligned to the logical block size (512 here);
    // a page-aligned window into a larger vector is aligned for any device.
    let mut storage = vec![0x5au8; (512 << 10) + 4096];
    let skip = storage.as_ptr().align_offset(4096);
    let buf = &mut storage[skip..skip + (512 << 10)];
    let writes = [(4096usize, 32), (64 << 10, 16), (512 << 10, 4)]; // (bytes, how many)
    let reads = [(16usize << 10, 16), (256 << 10, 4)];

    let links = [on_complete.attach_tracepoint("block", "block_rq_complete")?, on_issue.attach_tracepoint("block", "block_rq_issue")?];
    let started = Instant::now();
    let mut offset = 1u64 << 20;
    for &(size, n) in &writes {
        for _ in 0..n {
            assert_eq!(disk.write_at(&buf[..size], offset)?, size);
            offset += size as u64;
        }
    }
    let mut offset = 1u64 << 20;
    for &(size, n) in &reads {
        for _ in 0..n {
            assert_eq!(disk.read_at(&mut buf[..size], offset)?, size);
            offset += size as u64;
        }
    }
    let elapsed = started.elapsed();
    drop(links);
    drop(disk);

    let dev_name = |dev: u32| {
        std::fs::read_link(format!("/sys/dev/block/{}:{}", dev >> 20, dev & 0xfffff))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| format!("{}:{}", dev >> 20, dev & 0xfffff))
    };
    let mut rows: BTreeMap<(u32, u8), [u64; 3]> = BTreeMap::new();
    for entry in stats.typed::<[u32; 2], [u64; 3]>()?.iter() {
        let ([dev, dir], v) = entry?;
        rows.insert((dev, dir as u8), v);
    }
    let secs = elapsed.as_secs_f64();
    println!("{:<8} {:>3} {:>8} {:>10} {:>9} {:>8} {:>8}", "device", "op", "requests", "KiB", "avg µs", "IOPS", "MiB/s");
    for (&(dev, dir), &[n, b, ns]) in &rows {
        let (iops, mibs) = (n as f64 / secs, b as f64 / secs / (1 << 20) as f64);
        println!("{:<8} {:>3} {n:>8} {:>10} {:>9.1} {iops:>8.0} {mibs:>8.1}", dev_name(dev), dir as char, b >> 10, ns as f64 / n as f64 / 1e3);
    }
    let mut buckets: Vec<(u32, u64)> = Vec::new();
    for entry in hist.typed::<[u32; 2], u64>()?.iter() {
        let ([dev, bucket], n) = entry?;
        if dev == loop_dev {
            buckets.push((bucket, n));
        }
    }
    buckets.sort();
    println!("{name} latency:\n{:>17} : count", "usecs");
    for &(b, n) in &buckets {
        let range = format!("{} -> {}", 1u64 << b, (1u64 << (b + 1)) - 1);
        println!("{range:>17} : {n:<5} {}", "*".repeat((n as usize).div_ceil(2)));
    }

    let expect = |ops: &[(usize, u64)]| [ops.iter().map(|&(_, n)| n).sum::<u64>(), ops.iter().map(|&(s, n)| s as u64 * n).sum::<u64>()];
    let seen = |dir: u8| rows.get(&(loop_dev, dir)).map(|v| [v[0], v[1]]).unwrap_or_default();
    assert_eq!(seen(b'W'), expect(&writes), "one request per write, of the write's size");
    assert_eq!(seen(b'R'), expect(&reads), "one request per read, of the read's size");
    assert_eq!(rows.keys().filter(|(dev, _)| *dev == loop_dev).count(), 2, "nothing else on the loop device");
    assert_eq!(buckets.iter().map(|&(_, n)| n).sum::<u64>(), 72, "every request timed");
    // With --direct-io=on the loop driver reads the backing file with O_DIRECT: each of our
    // reads became at least one read of the disk below (other processes may add their own).
    if let Some(backing) = backing_dev {
        let [n, b] = rows.get(&(backing, b'R')).map(|v| [v[0], v[1]]).unwrap_or_default();
        println!("backing disk {}: {n} reads, {} KiB", dev_name(backing), b >> 10);
        assert!(n >= 20 && b >= expect(&reads)[1], "the loop device's reads reached the backing disk");
    }
    Ok(())
}
