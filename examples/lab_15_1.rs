//! Lab 15.1 — an event counter dashboard (tutorial/ch15-references.md). Two tracepoint programs
//! count this process's `getppid` and `getcwd` calls in an mmapable array; the dashboard reads
//! the counters through `refs::Entry`s and shows rates per second; a `refs::Watch` raises an
//! alert when the getppid counter passes a threshold, and the dashboard acknowledges it by
//! resetting the counter through its entry (an atomic swap to zero: nothing counted meanwhile is
//! lost). Then both sides race: threads call getppid flat out while this thread adds to the same
//! counter with `compare_exchange`; the total must be exact.
//!
//! On a terminal the dashboard is a live ratatui view below the prompt; otherwise (piped, in CI,
//! as the chapter's doctest) one plain line per refresh. Run as root:
//! `cargo run --example lab_15_1`. The same code is a doctest of the chapter.

use bpfkit::bpf_asm;
use bpfkit::helpers::patterns::{map_lookup, tgid_filter};
use bpfkit::maps::{Map, MapFlags, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program};
use bpfkit::refs::{Atomicity, Entry, Watch};
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table, Widget};
use std::io::IsTerminal;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;
const PPID: u32 = 0; // the counters' slots
const CWD: u32 = 1;
const BURSTS: u64 = 150; // the events: 150 bursts of 40 getppid and 4 getcwd calls, 10 ms apart
const THRESHOLD: u64 = 2_500; // alert when the getppid counter reaches this
const TICK: Duration = Duration::from_millis(250);
const HAMMERS: u64 = 2; // the race: threads calling getppid, each this many times
const CALLS: u64 = 200_000;

fn main() -> Result<(), Error> {
    if !bpfkit::features::can_use_bpf("Lab 15.1") {
        return Ok(());
    }
    let counters = Map::create(&MapSpec::new("counters", MapType::Array, 4, 8, 2).flags(MapFlags::MMAPABLE))?;
    let (on_getppid, on_getcwd) = (counter(PPID, &counters)?, counter(CWD, &counters)?);
    let ppid = Entry::<u32, u64>::new(&counters, PPID)?;
    let cwd = Entry::<u32, u64>::new(&counters, CWD)?;
    assert_eq!(ppid.atomicity(), Atomicity::MappedMemory, "an mmapable array: CPU atomics on the program's word");
    let watch = Watch::<u32, u64>::new(&counters, PPID)?;
    let links = [on_getppid.attach_tracepoint("syscalls", "sys_enter_getppid")?, on_getcwd.attach_tracepoint("syscalls", "sys_enter_getcwd")?];

    // ---- The dashboard: events from one thread, alerts from a watch, resets through the entry ----
    let mut view = View::new()?;
    let (alert_tx, alerts) = mpsc::channel::<u64>();
    let (made, taken, resets) = std::thread::scope(|s| -> Result<_, Error> {
        let events = s.spawn(make_events);
        s.spawn(move || {
            // The watch looks every few ms (the kernel cannot notify a change): one alert each time
            // the counter crosses the threshold. It ends 300 ms after the last change.
            let mut below = true;
            for value in watch.changes(Duration::from_millis(300)) {
                let Ok(Some(v)) = value else { break };
                if below && v >= THRESHOLD && alert_tx.send(v).is_err() {
                    break;
                }
                below = v < THRESHOLD;
            }
        });
        let started = Instant::now();
        let (mut taken, mut resets, mut shown) = (0u64, 0u64, [0u64; 2]);
        let mut next_tick = started + TICK;
        loop {
            match alerts.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
                Ok(seen) => {
                    // Acknowledge: take the count and restart from zero in one atomic step. This
                    // thread alone resets, so `taken + load()` is every getppid so far.
                    let (old, _) = ppid.update(|_| 0)?;
                    taken += old;
                    resets += 1;
                    let at = started.elapsed().as_secs_f64();
                    view.alert(format!("{at:5.2}s  ALERT getppid passed {THRESHOLD} (the watch saw {seen}); reset at {old}"))?;
                }
                Err(RecvTimeoutError::Timeout) => {
                    let now = [ppid.load()?, cwd.load()?];
                    let totals = [taken + now[0], now[1]];
                    let rates = [0, 1].map(|i| (totals[i] - shown[i]) as f64 / TICK.as_secs_f64());
                    view.draw(started.elapsed().as_secs_f64(), now, totals, rates)?;
                    shown = totals;
                    next_tick += TICK;
                }
                Err(RecvTimeoutError::Disconnected) => break, // the watch ended: the events are over
            }
        }
        view.finish()?;
        Ok((events.join().expect("the events thread"), taken, resets))
    })?;
    let (ppid_calls, cwd_calls) = made;
    println!("made {ppid_calls} getppid and {cwd_calls} getcwd calls; {resets} alerts, {taken} taken at resets + {} now", ppid.load()?);
    assert_eq!(taken + ppid.load()?, ppid_calls, "every getppid counted once, across the resets");
    assert_eq!(cwd.load()?, cwd_calls, "every getcwd counted once");
    assert!(resets >= 1, "{ppid_calls} calls crossed {THRESHOLD} at least once");

    // ---- The race: the program and compare_exchange on one counter, both flat out ----
    let before = ppid.load()?;
    let (mine, retries) = std::thread::scope(|s| -> Result<_, Error> {
        let hammers: Vec<_> = (0..HAMMERS).map(|_| s.spawn(|| (0..CALLS).for_each(|_| _ = std::os::unix::process::parent_id()))).collect();
        let (mut mine, mut retries) = (0u64, 0u64);
        while mine < CALLS || hammers.iter().any(|h| !h.is_finished()) {
            let mut current = ppid.load()?;
            while let Err(actual) = ppid.compare_exchange(current, current + 1)? {
                retries += 1; // the program added in between: try again from what is there now
                current = actual;
            }
            mine += 1;
        }
        hammers.into_iter().for_each(|h| h.join().expect("a getppid thread"));
        Ok((mine, retries))
    })?;
    let total = ppid.load()? - before;
    println!("race: {} getppid by the program + {mine} compare_exchange ({retries} retries) = {total}", HAMMERS * CALLS);
    assert_eq!(total, HAMMERS * CALLS + mine, "no increment lost on either side");
    drop(links);
    Ok(())
}

/// A tracepoint program adding 1 to `counters[slot]` for each call this process makes.
fn counter(slot: u32, counters: &Map) -> Result<Program, Error> {
    let asm = bpf_asm! {
        {tgid_filter(std::process::id(), "out")?}
        *(u32 *)(r10 - 4) = {slot as i32}
        {map_lookup("counters", -4, "out")?}
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
    out:
        r0 = 0
        exit
    };
    Ok(Program::load(&asm.assemble()?, &[counters], &LoadOptions::new("count_calls", ProgType::Tracepoint))?)
}

/// The events: bursts of 40 getppid and 4 getcwd calls every 10 ms; returns how many of each.
fn make_events() -> (u64, u64) {
    let (mut ppid, mut cwd) = (0, 0);
    for _ in 0..BURSTS {
        for _ in 0..40 {
            let _ = std::os::unix::process::parent_id(); // getppid(2)
            ppid += 1;
        }
        for _ in 0..4 {
            let _ = std::env::current_dir(); // getcwd(2)
            cwd += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (ppid, cwd)
}

/// Where the dashboard goes: a live ratatui view below the prompt when stdout is a terminal,
/// one plain line per refresh otherwise.
enum View {
    Live(ratatui::DefaultTerminal),
    Lines,
}

impl View {
    fn new() -> Result<View, Error> {
        if !std::io::stdout().is_terminal() {
            return Ok(View::Lines);
        }
        // An inline viewport: no alternate screen and no raw mode (Ctrl-C still interrupts);
        // the last frame stays on the screen.
        let options = ratatui::TerminalOptions { viewport: ratatui::Viewport::Inline(5) };
        Ok(View::Live(ratatui::Terminal::with_options(ratatui::backend::CrosstermBackend::new(std::io::stdout()), options)?))
    }

    /// One refresh: each counter's value now, its total since the start and its rate.
    fn draw(&mut self, at: f64, now: [u64; 2], totals: [u64; 2], rates: [f64; 2]) -> Result<(), Error> {
        let names = ["getppid", "getcwd"];
        match self {
            View::Lines => {
                let cols: Vec<String> = (0..2).map(|i| format!("{} {:>5} (total {:>5}, {:>5.0}/s)", names[i], now[i], totals[i], rates[i])).collect();
                println!("{at:5.2}s  {}", cols.join("   "));
            }
            View::Live(term) => {
                term.draw(|f| {
                    let rows = (0..2).map(|i| Row::new([names[i].to_string(), now[i].to_string(), totals[i].to_string(), format!("{:.0}", rates[i])]));
                    let widths = [Constraint::Length(10), Constraint::Length(10), Constraint::Length(10), Constraint::Length(10)];
                    let title = format!(" Lab 15.1: pid {}, {at:.2}s (alert at {THRESHOLD}) ", std::process::id());
                    let table = Table::new(rows, widths).header(Row::new(["event", "counter", "total", "per s"])).block(Block::bordered().title(title));
                    f.render_widget(table, Rect { width: f.area().width.min(64), ..f.area() });
                })?;
            }
        }
        Ok(())
    }

    /// An alert: a line of its own (on a terminal, scrolled in above the live view).
    fn alert(&mut self, text: String) -> Result<(), Error> {
        match self {
            View::Lines => println!("{text}"),
            View::Live(term) => term.insert_before(1, |buf| Paragraph::new(Line::from(text)).render(buf.area, buf))?,
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Error> {
        if let View::Live(term) = self {
            // Below the last frame, which stays on the screen.
            let bottom = term.get_frame().area().bottom();
            term.set_cursor_position((0, bottom.saturating_sub(1)))?;
            term.show_cursor()?;
            println!();
        }
        Ok(())
    }
}
