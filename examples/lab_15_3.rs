//! Lab 15.3 — undo and redo (tutorial/ch15-references.md). The state: a document of four cells
//! in an array map, edited through `refs::Entry`s. Each edit is a record `Edit { cell, by,
//! before, after }`; two stack maps are the undo and redo histories (`refs::channel`: last in,
//! first out). Undo pops an edit, writes `before` back (with `compare_exchange`: only if the cell
//! still holds `after`) and pushes it onto redo; redo does the reverse; a new edit clears redo.
//! Edits come from two sides: this program, and a BPF program (a syscall program the lab runs)
//! that edits in the kernel and pushes its own record with `bpf_map_push_elem`, clearing redo
//! too. The histories hold 8 edits: pushing onto a full one drops the oldest.
//!
//! Run as root: `cargo run --example lab_15_3`. The same code is a doctest of the chapter.

use bpfkit::bpf_asm;
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgFlags, ProgType, Program, TestRun};
use bpfkit::refs::{channel, Entry, Receiver, RefError, Sender};
use bytemuck::{Pod, Zeroable};

type Error = Box<dyn std::error::Error + Send + Sync>;
const CELLS: u32 = 4;
const HISTORY: u32 = 8; // edits each stack keeps
const USER: u32 = 0; // Edit::by
const KERNEL: u32 = 1;

/// One edit, as both histories and the kernel program store it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
struct Edit {
    cell: u32,
    by: u32,
    before: u64,
    after: u64,
}

struct Editor {
    cells: Vec<Entry<u32, u64>>,
    undo: (Sender<Edit>, Receiver<Edit>),
    redo: (Sender<Edit>, Receiver<Edit>),
    kernel: Program,
    echo: std::cell::Cell<bool>, // print each step
}

fn main() -> Result<(), Error> {
    if !bpfkit::features::can_use_bpf("Lab 15.3") {
        return Ok(());
    }
    let ed = Editor::new()?;
    let edit = |cell, before, after| Edit { cell, by: USER, before, after };

    ed.edit(0, 10)?;
    ed.edit(1, 20)?;
    ed.edit(0, 11)?;
    ed.kernel_edit(2, 30)?;
    assert_eq!(ed.cells()?, [11, 20, 30, 0]);
    // Peek shows what undo would revert, and leaves it there.
    let top = ed.undo.1.peek()?;
    println!("peek  {}", show(&top));
    assert_eq!(top, Edit { by: KERNEL, ..edit(2, 0, 30) }, "the kernel's edit is on top");
    assert_eq!(ed.undo.1.peek()?, top, "peek does not pop");
    // Undo is last in, first out: the kernel's edit, then the second edit of cell 0.
    assert_eq!(ed.undo()?, Some(top));
    assert_eq!(ed.undo()?, Some(edit(0, 10, 11)));
    assert_eq!(ed.cells()?, [10, 20, 0, 0]);
    assert_eq!(ed.redo.1.peek()?, edit(0, 10, 11), "redo's top: the last undone");
    assert_eq!(ed.redo()?, Some(edit(0, 10, 11)));
    assert_eq!(ed.cells()?, [11, 20, 0, 0]);
    // A new edit clears redo (the kernel's undone edit is still there until then) …
    ed.edit(3, 40)?;
    assert_eq!(ed.redo()?, None, "a new edit cleared redo");
    // … and so does one made by the kernel.
    assert_eq!(ed.undo()?, Some(edit(3, 0, 40)));
    ed.kernel_edit(1, 21)?;
    assert_eq!(ed.redo()?, None, "the kernel's edit cleared redo too");
    // Undo everything: the history backwards.
    let mut undone = Vec::new();
    while let Some(e) = ed.undo()? {
        undone.push(e);
    }
    let want = [Edit { by: KERNEL, ..edit(1, 20, 21) }, edit(0, 10, 11), edit(1, 0, 20), edit(0, 0, 10)];
    assert_eq!(undone, want);
    assert_eq!(ed.cells()?, [0; 4], "back to the start");

    // The histories are bounded: 12 edits, of which undo keeps the last 8.
    ed.echo.set(false);
    for v in 1..=12 {
        ed.edit(0, v)?;
    }
    let mut n = 0;
    while ed.undo()?.is_some() {
        n += 1;
    }
    println!("12 edits of cell 0, then undo until empty: {n} undone, cell 0 is {}", ed.cells()?[0]);
    assert_eq!((n, ed.cells()?[0]), (HISTORY, 4), "the 8 newest undone; the 4 oldest fell off the bottom");
    Ok(())
}

impl Editor {
    fn new() -> Result<Editor, Error> {
        let doc = Map::create(&MapSpec::new("doc", MapType::Array, 4, 8, CELLS))?;
        let undo = Map::create(&MapSpec::new("undo", MapType::Stack, 0, 24, HISTORY))?;
        let redo = Map::create(&MapSpec::new("redo", MapType::Stack, 0, 24, HISTORY))?;
        // The kernel's edit. Context: { u32 cell; u32 pad; u64 value }.
        let kernel = bpf_asm! {
            r6 = r1
            r1 = *(u32 *)(r6 + 0)
            *(u32 *)(r10 - 32) = w1         // struct Edit at r10 - 32: cell,
            *(u32 *)(r10 - 28) = {KERNEL as i32} // by,
            r1 = *(u64 *)(r6 + 8)
            *(u64 *)(r10 - 16) = r1         // after
            r1 = map[doc] ll
            r2 = r10
            r2 += -32                       // the key: the cell
            call bpf_map_lookup_elem
            if r0 == 0 goto out             // no such cell
            r1 = *(u64 *)(r0 + 0)
            *(u64 *)(r10 - 24) = r1         // before
            r1 = *(u64 *)(r10 - 16)
            *(u64 *)(r0 + 0) = r1           // the edit itself
            r1 = map[undo] ll
            r2 = r10
            r2 += -32
            r3 = 2                          // BPF_EXIST: when full, drop the oldest
            call bpf_map_push_elem
            r7 = 0
        clear:                              // empty redo: pop until it says ENOENT
            r1 = map[redo] ll
            r2 = r10
            r2 += -56
            call bpf_map_pop_elem
            if r0 != 0 goto out
            r7 += 1
            if r7 < {HISTORY as i32} goto clear
        out:
            r0 = 0
            exit
        };
        let opts = LoadOptions::new("kernel_edit", ProgType::Syscall).flags(ProgFlags::SLEEPABLE);
        let kernel = Program::load(&kernel.assemble()?, &[&doc, &undo, &redo], &opts)?;
        let cells = (0..CELLS).map(|c| Entry::new(&doc, c)).collect::<Result<_, _>>()?;
        Ok(Editor { cells, undo: channel(&undo)?, redo: channel(&redo)?, kernel, echo: true.into() })
    }

    /// The user's edit: write the cell, remember how to revert it, forget what was undone.
    fn edit(&self, cell: u32, value: u64) -> Result<(), Error> {
        let (before, after) = self.cells[cell as usize].update(|_| value)?;
        let e = Edit { cell, by: USER, before, after };
        self.undo.0.force_send(&e)?; // a full history drops its oldest edit
        loop {
            match self.redo.1.try_recv() {
                Ok(_) => {}
                Err(RefError::Empty { .. }) => break,
                Err(err) => return Err(err.into()),
            }
        }
        self.say("edit", &e)
    }

    /// The kernel's edit: the program does all three steps itself.
    fn kernel_edit(&self, cell: u32, value: u64) -> Result<(), Error> {
        let mut ctx = [0u8; 16];
        ctx[..4].copy_from_slice(&cell.to_ne_bytes());
        ctx[8..].copy_from_slice(&value.to_ne_bytes());
        self.kernel.test_run(&TestRun::default().ctx(ctx))?;
        self.say("edit", &self.undo.1.peek()?)
    }

    /// Revert the newest edit and keep it for redo; `None` when there is nothing to undo.
    fn undo(&self) -> Result<Option<Edit>, Error> {
        self.step("undo", &self.undo.1, &self.redo.0, |e| (e.after, e.before))
    }

    /// Apply the newest undone edit again.
    fn redo(&self) -> Result<Option<Edit>, Error> {
        self.step("redo", &self.redo.1, &self.undo.0, |e| (e.before, e.after))
    }

    fn step(&self, what: &str, from: &Receiver<Edit>, to: &Sender<Edit>, values: impl Fn(&Edit) -> (u64, u64)) -> Result<Option<Edit>, Error> {
        let e = match from.try_recv() {
            Ok(e) => e,
            Err(RefError::Empty { .. }) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let (expected, new) = values(&e);
        // Only if nobody changed the cell since: otherwise this would overwrite their edit.
        if let Err(now) = self.cells[e.cell as usize].compare_exchange(expected, new)? {
            return Err(format!("{what}: cell {} holds {now}, not {expected}", e.cell).into());
        }
        to.force_send(&e)?;
        self.say(what, &e)?;
        Ok(Some(e))
    }

    fn say(&self, what: &str, e: &Edit) -> Result<(), Error> {
        if self.echo.get() {
            println!("{what:<5} {:<28} doc {:?}", show(e), self.cells()?);
        }
        Ok(())
    }

    fn cells(&self) -> Result<[u64; CELLS as usize], Error> {
        let mut doc = [0; CELLS as usize];
        for (value, cell) in doc.iter_mut().zip(&self.cells) {
            *value = cell.load()?;
        }
        Ok(doc)
    }
}

fn show(e: &Edit) -> String {
    format!("cell {}: {:>2} -> {:>2} ({})", e.cell, e.before, e.after, if e.by == KERNEL { "kernel" } else { "you" })
}
