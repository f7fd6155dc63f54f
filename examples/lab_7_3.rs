//! Lab 7.3 — packet capture and sampling (tutorial/ch07-xdp.md): an XDP program on a veth
//! copies one frame in N, chosen at random, into a ring buffer; user space writes the samples
//! as a pcap file. tcpdump captures what the sender sent; `tcpdump -r` and `tshark -r` read
//! the lab's file back. Every sampled frame must be byte-identical to a frame that was sent, and
//! the number sampled within the binomial bound of sent / N.
//!
//! Run as root: `cargo run --example lab_7_3`. The same code is a doctest of the chapter.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use bpfkit::attach::XdpMode;
use bpfkit::bpf_asm;
use bpfkit::events::RingBuf;
use bpfkit::helpers::patterns::sample_one_in;
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::net::{if_index, NetNs, Netlink};
use bpfkit::prog::{LoadOptions, ProgType, Program};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::TsResolution;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// tcpdump writing what it captures to a file; dropping it kills and reaps it.
struct Tcpdump(Child);

impl Drop for Tcpdump {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The frames of a pcap file as `tcpdump -r FILE -xx` prints them (hex after each header line).
fn tcpdump_frames(file: &std::path::Path) -> Result<Vec<Vec<u8>>, Error> {
    let out = Command::new("tcpdump").args(["-nn", "-xx", "-r"]).arg(file).output()?;
    if !out.status.success() {
        return Err(format!("tcpdump -r: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for line in String::from_utf8(out.stdout)?.lines() {
        match line.trim_start().strip_prefix("0x").and_then(|l| l.split_once(':')) {
            Some((_, hex)) => {
                let frame = frames.last_mut().ok_or("hex before a header line")?;
                for group in hex.split_whitespace() {
                    for i in (0..group.len()).step_by(2) {
                        frame.push(u8::from_str_radix(&group[i..i + 2], 16)?);
                    }
                }
            }
            None => frames.push(Vec::new()), // a packet's header line
        }
    }
    Ok(frames)
}

fn main() -> Result<(), Error> {
    if !bpfkit::features::can_use_bpf("Lab 7.3") {
        return Ok(());
    }
    const ONE_IN: u32 = 10;
    const SENT: u32 = 10_000;
    const PORT: u16 = 4242;
    const SNAPLEN: usize = 1514; // an Ethernet frame at MTU 1500
    const RECORD: usize = 16 + SNAPLEN + 6; // {u64 time, u32 len, u32 caplen, frame}, 8-aligned
    let samples = Map::create(&MapSpec::new("samples", MapType::RingBuf, 0, 0, 4 << 20))?;
    // [frames seen, sampled, lost (ring full)]
    let stats = Map::create(&MapSpec::new("cap_stats", MapType::Array, 4, 24, 1))?;
    let prog = bpf_asm! {
        r9 = r1
        r1 = map_value[cap_stats]+0 ll
        r2 = 1
        lock *(u64 *)(r1 + 0) += r2         // seen
        {sample_one_in(ONE_IN, "pass")?}    // bpf_get_prandom_u32() % N == 0
        r1 = r9
        call bpf_xdp_get_buff_len
        r7 = r0                             // the frame's length
        r1 = map[samples] ll
        r2 = {RECORD as i32}
        r3 = 0
        call bpf_ringbuf_reserve
        if r0 == 0 goto lost
        r8 = r0
        call bpf_ktime_get_ns
        *(u64 *)(r8 + 0) = r0               // when (CLOCK_MONOTONIC)
        *(u32 *)(r8 + 8) = w7               // the frame's length
        r4 = r7
        if r4 <= {SNAPLEN as i32} goto sized
        r4 = {SNAPLEN as i32}               // the part that fits
    sized:
        if r4 < 14 goto discard             // (no frame is shorter; the verifier wants a minimum)
        *(u32 *)(r8 + 12) = w4              // how much was copied
        r1 = r9
        r2 = 0                              // from the first byte
        r3 = r8
        r3 += 16
        call bpf_xdp_load_bytes             // copy the frame into the record
        if r0 != 0 goto discard
        r1 = r8
        r2 = 0
        call bpf_ringbuf_submit
        r1 = map_value[cap_stats]+0 ll
        r2 = 1
        lock *(u64 *)(r1 + 8) += r2         // sampled
        goto pass
    discard:
        r1 = r8
        r2 = 0
        call bpf_ringbuf_discard
    lost:
        r1 = map_value[cap_stats]+0 ll
        r2 = 1
        lock *(u64 *)(r1 + 16) += r2        // lost
    pass:
        r0 = 2                              // XDP_PASS: sampling changes nothing
        exit
    };
    let prog = Program::load(&prog.assemble()?, &[&samples, &stats], &LoadOptions::new("sampler", ProgType::Xdp))?;

    // sender 192.0.2.1 (va) ── (vb) 192.0.2.2 receiver, the sampler on vb.
    let (a_ip, b_ip) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
    let (a, b) = (NetNs::new()?, NetNs::new()?);
    let configure = |name: &str, ip: Ipv4Addr| -> Result<u32, Error> {
        let nl = Netlink::open()?;
        let i = if_index(name)?;
        nl.add_ipv4(i, ip, 24)?;
        nl.set_up(i)?;
        Ok(i)
    };
    a.run(|| -> Result<u32, Error> {
        Netlink::open()?.add_veth("va", "vb", Some(b.as_fd()))?;
        configure("va", a_ip)
    })??;
    let vb = b.run(|| configure("vb", b_ip))??;
    let tx = a.run(|| UdpSocket::bind((a_ip, 0)))??;
    let rx = b.run(|| UdpSocket::bind((b_ip, PORT)))??;
    rx.set_read_timeout(Some(Duration::from_secs(2)))?;
    tx.send_to(b"warm-up", (b_ip, PORT))?; // ARP resolved before the capture starts
    rx.recv(&mut [0u8; 64])?;

    let dir = tempfile::Builder::new().prefix("bpfkit-lab-7-3-").tempdir()?;
    let (sent_file, sampled_file) = (dir.path().join("sent.pcap"), dir.path().join("sampled.pcap"));
    // The oracle: tcpdump on the sender's side, every frame va transmits, unbuffered, as root.
    let mut tcpdump = Tcpdump(a.run(|| {
        Command::new("tcpdump")
            .args(["-i", "va", "-Q", "out", "-nn", "-U", "--immediate-mode", "-s", "2048", "-B", "32768", "-Z", "root", "-w"])
            .arg(&sent_file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
    })??);
    let (pid, scratch) = (tcpdump.0.id(), dir.path().to_path_buf());
    ctrlc::set_handler(move || {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        let _ = std::fs::remove_dir_all(&scratch);
        std::process::exit(130);
    })?;
    let mut stderr = BufReader::new(tcpdump.0.stderr.take().ok_or("no stderr")?);
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        if stderr.read_line(&mut line)? == 0 {
            return Err("tcpdump exited before capturing".into());
        }
    }

    let link = b.run(|| prog.attach_xdp(vb, XdpMode::Native))??;
    for seq in 0..SENT {
        let mut payload = vec![0x5a; 4 + (seq as usize * 37) % 1000]; // 46 to 1045-byte frames
        payload[..4].copy_from_slice(&seq.to_be_bytes());
        tx.send_to(&payload, (b_ip, PORT))?;
    }
    // tcpdump is done when its file stops growing (it writes each frame as it reads it).
    let mut size = u64::MAX;
    while std::fs::metadata(&sent_file)?.len() != size {
        size = std::fs::metadata(&sent_file)?.len();
        std::thread::sleep(Duration::from_millis(200));
    }
    Command::new("kill").args(["-INT", &tcpdump.0.id().to_string()]).status()?;
    tcpdump.0.wait()?;
    let mut summary = String::new();
    stderr.read_to_string(&mut summary)?;
    drop(link);

    // The samples, as a pcap file: record times converted from the monotonic clock to the epoch.
    let mut mono = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut mono) };
    let boot = SystemTime::now().duration_since(UNIX_EPOCH)? - Duration::new(mono.tv_sec as u64, mono.tv_nsec as u32);
    let header = PcapHeader { snaplen: SNAPLEN as u32, ts_resolution: TsResolution::NanoSecond, ..Default::default() };
    let mut pcap = PcapWriter::with_header(std::fs::File::create(&sampled_file)?, header)?;
    let mut written = Vec::new();
    for record in RingBuf::new(&samples)?.read_all() {
        let time = u64::from_ne_bytes(record[0..8].try_into()?);
        let len = u32::from_ne_bytes(record[8..12].try_into()?);
        let caplen = u32::from_ne_bytes(record[12..16].try_into()?) as usize;
        let frame = &record[16..16 + caplen];
        pcap.write_packet(&PcapPacket::new(boot + Duration::from_nanos(time), len, frame))?;
        written.push(frame.to_vec());
    }
    drop(pcap);

    let [seen, sampled, lost] = stats.typed::<u32, [u64; 3]>()?.get(&0)?.ok_or("no stats")?;
    println!("XDP: {seen} frames seen, {sampled} sampled (1 in {ONE_IN}), {lost} lost");
    // What was sent, by tcpdump: each of our datagrams by its sequence number.
    let sent: Vec<Vec<u8>> = {
        let mut reader = PcapReader::new(std::fs::File::open(&sent_file)?)?;
        let mut frames = Vec::new();
        while let Some(packet) = reader.next_packet() {
            frames.push(packet?.data.into_owned());
        }
        frames
    };
    let lab_seq = |f: &[u8]| -> Option<u32> {
        let ours = f.len() >= 46 && f[12..14] == [8, 0] && f[23] == 17 && f[36..38] == PORT.to_be_bytes();
        ours.then(|| u32::from_be_bytes(f[42..46].try_into().unwrap()))
    };
    let by_seq: HashMap<u32, &Vec<u8>> = sent.iter().filter_map(|f| Some((lab_seq(f)?, f))).collect();
    println!("tcpdump on the sender: {}", summary.lines().collect::<Vec<_>>().join(", "));
    println!("tcpdump -r {}:", sampled_file.file_name().unwrap_or_default().to_string_lossy());
    let listing = Command::new("tcpdump").args(["-nn", "-r"]).arg(&sampled_file).output()?;
    for l in String::from_utf8(listing.stdout)?.lines().take(3) {
        println!("  {l}");
    }
    let read_back = tcpdump_frames(&sampled_file)?;
    let tshark = Command::new("tshark").args(["-r"]).arg(&sampled_file).args(["-T", "fields", "-e", "frame.len"]).output()?;
    let tshark_lens: Vec<usize> = String::from_utf8(tshark.stdout)?.lines().map(str::parse).collect::<Result<_, _>>()?;

    let mut kinds: HashMap<&str, usize> = HashMap::new();
    for f in &read_back {
        let kind = match (&f[12..14], f.get(23)) {
            (_, _) if lab_seq(f).is_some() => "lab datagrams",
            ([8, 0], _) => "other IPv4",
            ([8, 6], _) => "ARP",
            ([0x86, 0xdd], _) => "IPv6",
            _ => "other",
        };
        *kinds.entry(kind).or_default() += 1;
    }
    let mut kinds: Vec<_> = kinds.into_iter().collect();
    kinds.sort();
    println!("sampled: {}", kinds.iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", "));
    let lab = read_back.iter().filter(|f| lab_seq(f).is_some()).count();
    let (p, n) = (1.0 / f64::from(ONE_IN), f64::from(SENT));
    let (mean, tolerance) = (n * p, 4.0 * (n * p * (1.0 - p)).sqrt());
    println!("{lab} of {SENT} datagrams sampled: expected {mean:.0} ± {tolerance:.0} (4 standard deviations)");

    assert_eq!(by_seq.len(), SENT as usize, "tcpdump saw every datagram the sender sent");
    assert_eq!(lost, 0, "the ring had room for every sample");
    assert_eq!(written.len() as u64, sampled, "one record per sample");
    assert_eq!(read_back, written, "tcpdump reads back exactly the frames the lab wrote");
    assert_eq!(tshark_lens, written.iter().map(Vec::len).collect::<Vec<_>>(), "and so does tshark");
    assert!((lab as f64 - mean).abs() <= tolerance, "{lab} sampled, {mean} ± {tolerance}");
    for frame in &read_back {
        match lab_seq(frame) {
            Some(seq) => assert_eq!(Some(&frame), by_seq.get(&seq), "datagram {seq} as sent"),
            None => assert!(sent.contains(frame), "a sampled frame the sender did not send"),
        }
    }
    assert!(seen >= u64::from(SENT));
    Ok(())
}
