//! A test framework for eBPF programs: declarative cases run through `BPF_PROG_TEST_RUN` in the
//! kernel's own verifier and interpreter/JIT, property-style generated inputs, and **coverage**
//! — which basic blocks ran and which way each conditional jump went, mapped back to the lines
//! the program was written on.
//!
//! ```no_run
//! use bpfkit::bpf_asm;
//! use bpfkit::prog::{LoadOptions, ProgType};
//! use bpfkit::testing::{packet::Packet, Case, Suite};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let filter = bpf_asm! {
//!     r2 = *(u32 *)(r1 + 0)
//!     r3 = *(u32 *)(r1 + 4)
//!     r4 = r2
//!     r4 += 14
//!     if r4 > r3 goto pass
//!     r0 = 1                      // XDP_DROP: long enough for an Ethernet header
//!     exit
//! pass:
//!     r0 = 2
//!     exit
//! }.assemble()?;
//! let syn = Packet::tcp("10.0.0.1:1234".parse()?, "10.0.0.2:80".parse()?).build()?;
//! let report = Suite::new(&filter, LoadOptions::new("filter", ProgType::Xdp))
//!     .case(Case::new("a frame is dropped").data(syn).returns(1))
//!     .case(Case::new("a runt passes").data(vec![0; 10]).returns(2))
//!     .run()?;
//! assert!(report.passed(), "{report}");
//! assert!(report.coverage.is_complete(), "{}", report.coverage);
//! # Ok(()) }
//! ```
//!
//! Cases run in the order given, against maps that keep their state from one case to the next
//! (expectations on map contents are checked after each case).

mod coverage;
pub mod packet;

use std::fmt;

pub use coverage::{BlockCoverage, BranchCoverage, Coverage};

use crate::insn::Assembled;
use crate::maps::{Map, MapError, MapSpec, MapType};
use crate::prog::{LoadError, LoadOptions, Program, TestRun};
use crate::sys::SysError;

/// Errors running a suite (a failed expectation is not an error: it is in the [`Report`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestError {
    /// The program (or its instrumented form) did not load.
    #[error(transparent)]
    Load(Box<LoadError>),
    /// Creating or reading the coverage map failed.
    #[error(transparent)]
    Map(#[from] MapError),
    /// A test run failed in the kernel (not an expectation: the run itself).
    #[error("case \"{case}\": {source}{}", hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Run {
        /// The case.
        case: String,
        /// The error of BPF_PROG_TEST_RUN.
        source: SysError,
        /// What to change, when the input explains the error.
        hint: Option<String>,
    },
    /// The program cannot be instrumented for coverage; says why.
    #[error("coverage: {0}")]
    Instrument(String),
}

crate::error::errno_from_sources!(TestError);

impl From<LoadError> for TestError {
    fn from(e: LoadError) -> TestError {
        TestError::Load(Box::new(e))
    }
}

/// What one run of the program gave back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// r0 at exit (the verdict: `XDP_DROP`, `TC_ACT_OK`, …).
    pub retval: u32,
    /// The packet after the program (it may rewrite or resize it).
    pub data_out: Vec<u8>,
    /// The context after the program, for program types that return it.
    pub ctx_out: Vec<u8>,
}

/// One test case: an input and what the run must give.
#[derive(Clone, Debug)]
pub struct Case {
    name: String,
    data: Vec<u8>,
    ctx: Option<Vec<u8>>,
    retval: Option<u32>,
    data_out: Option<Vec<u8>>,
    maps: Vec<(String, Vec<u8>, Option<Vec<u8>>)>,
}

impl Case {
    /// A case named `name` (the report names it), with no input yet.
    pub fn new(name: impl Into<String>) -> Case {
        Case { name: name.into(), data: Vec::new(), ctx: None, retval: None, data_out: None, maps: Vec::new() }
    }
    /// The packet (or other data) the program runs on — see [`packet::Packet`].
    pub fn data(mut self, data: impl Into<Vec<u8>>) -> Case {
        self.data = data.into();
        self
    }
    /// The context passed in (`struct __sk_buff`, raw tracepoint arguments, a syscall program's buffer).
    pub fn ctx(mut self, ctx: impl Into<Vec<u8>>) -> Case {
        self.ctx = Some(ctx.into());
        self
    }
    /// The program must return `retval`.
    pub fn returns(mut self, retval: u32) -> Case {
        self.retval = Some(retval);
        self
    }
    /// The packet after the run must be `data`.
    pub fn data_out(mut self, data: impl Into<Vec<u8>>) -> Case {
        self.data_out = Some(data.into());
        self
    }
    /// After the run, `map` must hold `value` under `key`.
    pub fn map_has(mut self, map: &Map, key: &[u8], value: &[u8]) -> Case {
        self.maps.push((map.name().to_string(), key.to_vec(), Some(value.to_vec())));
        self
    }
    /// After the run, `map` must not hold `key`.
    pub fn map_lacks(mut self, map: &Map, key: &[u8]) -> Case {
        self.maps.push((map.name().to_string(), key.to_vec(), None));
        self
    }
}

type Generator = Box<dyn Fn(&mut fastrand::Rng) -> Vec<u8>>;
type Check = Box<dyn Fn(&[u8], &Outcome) -> Result<(), String>>;

/// A property: inputs drawn from a generator, each run checked.
struct Property {
    name: String,
    runs: u32,
    seed: u64,
    generate: Generator,
    check: Check,
}

/// The result of one case (or one failing generated input of a property).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CaseResult {
    /// The case's name (a property's: with the run number).
    pub name: String,
    /// What the run gave.
    pub outcome: Outcome,
    /// Each expectation that did not hold; empty when the case passed.
    pub failures: Vec<String>,
    /// The input, for generated cases (to reproduce them).
    pub input: Option<Vec<u8>>,
}

/// Every case's result and the coverage of all runs together.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Report {
    /// The cases, in order; then each property's first failing input, if any.
    pub cases: Vec<CaseResult>,
    /// How many generated inputs each property ran (name, runs).
    pub properties: Vec<(String, u32)>,
    /// Blocks and branches executed by every run.
    pub coverage: Coverage,
}

impl Report {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.cases.iter().all(|c| c.failures.is_empty())
    }
    /// The cases that failed.
    pub fn failures(&self) -> impl Iterator<Item = &CaseResult> {
        self.cases.iter().filter(|c| !c.failures.is_empty())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.cases {
            if c.failures.is_empty() {
                writeln!(f, "ok    {} (returned {})", c.name, c.outcome.retval)?;
            } else {
                writeln!(f, "FAIL  {}: {}", c.name, c.failures.join("; "))?;
                if let Some(input) = &c.input {
                    writeln!(f, "      input: {}", input.iter().map(|b| format!("{b:02x}")).collect::<String>())?;
                }
            }
        }
        for (name, runs) in &self.properties {
            writeln!(f, "prop  {name}: {runs} generated inputs")?;
        }
        write!(f, "{}", self.coverage)
    }
}

/// A program under test, its maps, its cases and properties ([`Suite::run`] runs them).
pub struct Suite<'m> {
    source: Assembled,
    opts: LoadOptions,
    maps: Vec<&'m Map>,
    cases: Vec<Case>,
    properties: Vec<Property>,
}

impl<'m> Suite<'m> {
    /// A suite for `program`, loaded with `opts` (type, name, flags, …).
    pub fn new(program: &Assembled, opts: LoadOptions) -> Suite<'m> {
        Suite { source: program.clone(), opts, maps: Vec::new(), cases: Vec::new(), properties: Vec::new() }
    }

    /// The maps the program references (`map[NAME]`), bound by name as in [`Program::load`].
    pub fn maps(mut self, maps: &[&'m Map]) -> Suite<'m> {
        self.maps.extend_from_slice(maps);
        self
    }

    /// Add a case.
    pub fn case(mut self, case: Case) -> Suite<'m> {
        self.cases.push(case);
        self
    }

    /// Add a property: `runs` inputs from `generate` (seeded with `seed`, so a failure
    /// reproduces), each run checked by `check`; the first failing input is reported.
    pub fn property(
        mut self,
        name: impl Into<String>,
        runs: u32,
        seed: u64,
        generate: impl Fn(&mut fastrand::Rng) -> Vec<u8> + 'static,
        check: impl Fn(&[u8], &Outcome) -> Result<(), String> + 'static,
    ) -> Suite<'m> {
        self.properties.push(Property { name: name.into(), runs, seed, generate: Box::new(generate), check: Box::new(check) });
        self
    }

    /// Load the program (as written, to learn its stack depth from the verifier; then
    /// instrumented for coverage), run every case and property, and report.
    pub fn run(&self) -> Result<Report, TestError> {
        // BPF_LOG_STATS (4): the verifier's summary, which includes the stack depth.
        let plain = Program::load(&self.source, &self.maps, &self.opts.clone().log_level(4))?;
        let depth = stack_depth(&plain.log);
        drop(plain);
        let inst = coverage::instrument(&self.source, depth)?;
        let cov_map = Map::create(&MapSpec::new(coverage::MAP, MapType::Array, 4, inst.marks_len as u32, 1))?;
        let asm = inst.program.assemble().map_err(|e| TestError::Instrument(format!("the instrumented program does not assemble: {e}")))?;
        let mut maps = self.maps.clone();
        maps.push(&cov_map);
        let prog = Program::load(&asm, &maps, &self.opts)?;

        let run = |name: &str, data: &[u8], ctx: Option<&Vec<u8>>| -> Result<Outcome, TestError> {
            let mut t = TestRun::with_data(data.to_vec());
            if let Some(ctx) = ctx {
                t = t.ctx(ctx.clone());
            }
            let r = prog.test_run(&t).map_err(|source| {
                // Packet programs run on at least an Ethernet header: shorter input is EINVAL.
                let hint = (source.errno() == Some(libc::EINVAL) && !data.is_empty() && data.len() < 14)
                    .then(|| format!("{} bytes of input: packet programs run on at least an Ethernet header, 14 bytes", data.len()));
                TestError::Run { case: name.to_string(), source, hint }
            })?;
            Ok(Outcome { retval: r.retval, data_out: r.data_out, ctx_out: r.ctx_out })
        };
        let mut cases = Vec::new();
        for case in &self.cases {
            let outcome = run(&case.name, &case.data, case.ctx.as_ref())?;
            let mut failures = Vec::new();
            if let Some(want) = case.retval {
                if outcome.retval != want {
                    failures.push(format!("returned {}, expected {want}", outcome.retval));
                }
            }
            if let Some(want) = &case.data_out {
                if &outcome.data_out != want {
                    failures.push(packet_difference(&outcome.data_out, want));
                }
            }
            for (name, key, want) in &case.maps {
                let Some(map) = self.maps.iter().find(|m| m.name() == name) else {
                    failures.push(format!("map {name} is not one of the suite's maps"));
                    continue;
                };
                let got = map.lookup(key)?;
                if got.as_ref() != want.as_ref() {
                    failures.push(format!("map {name}[{}]: {} expected {}", hex(key), got.as_deref().map_or("absent".into(), hex), want.as_deref().map_or("absent".into(), hex)));
                }
            }
            cases.push(CaseResult { name: case.name.clone(), outcome, failures, input: None });
        }
        let mut properties = Vec::new();
        for p in &self.properties {
            let mut rng = fastrand::Rng::with_seed(p.seed);
            let mut ran = 0;
            for i in 0..p.runs {
                let input = (p.generate)(&mut rng);
                let name = format!("{} #{i}", p.name);
                let outcome = run(&name, &input, None)?;
                ran += 1;
                if let Err(why) = (p.check)(&input, &outcome) {
                    cases.push(CaseResult { name, outcome, failures: vec![why], input: Some(input) });
                    break;
                }
            }
            properties.push((p.name.clone(), ran));
        }
        let marks = cov_map.lookup(&0u32.to_ne_bytes())?.unwrap_or_default();
        Ok(Report { cases, properties, coverage: Coverage::from_marks(&self.source, &inst, &marks) })
    }
}

/// The verifier's `stack depth N` (or `N+M+…` for subprograms: the first, the main program's).
fn stack_depth(log: &str) -> u32 {
    log.lines()
        .find_map(|l| l.strip_prefix("stack depth "))
        .and_then(|d| d.split('+').next()?.trim().parse().ok())
        .unwrap_or(0)
}

/// Where a packet differs from the expected one: the first differing byte and up to 8 bytes
/// from there on each side, or the lengths when one is a prefix of the other.
fn packet_difference(got: &[u8], want: &[u8]) -> String {
    let lengths = if got.len() == want.len() { String::new() } else { format!(" ({} bytes, expected {})", got.len(), want.len()) };
    match got.iter().zip(want).position(|(a, b)| a != b) {
        Some(i) => format!("packet out differs at byte {i}: {} expected {}{lengths}", hex(&got[i..got.len().min(i + 8)]), hex(&want[i..want.len().min(i + 8)])),
        None => format!("packet out is {} bytes, expected {}", got.len(), want.len()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_packet_difference_names_the_first_byte() {
        assert_eq!(super::packet_difference(&[1, 2, 3, 4], &[1, 2, 9, 4]), "packet out differs at byte 2: 0304 expected 0904");
        assert_eq!(super::packet_difference(&[1, 2], &[1, 2, 3]), "packet out is 2 bytes, expected 3");
        assert_eq!(super::packet_difference(&[7, 2], &[1, 2, 3]), "packet out differs at byte 0: 0702 expected 010203 (2 bytes, expected 3)");
    }

    #[test]
    fn stack_depth_is_read_from_the_stats() {
        assert_eq!(super::stack_depth("processed 5 insns\nstack depth 24\n"), 24);
        assert_eq!(super::stack_depth("stack depth 16+8\n"), 16);
        assert_eq!(super::stack_depth("nothing"), 0);
    }
}
