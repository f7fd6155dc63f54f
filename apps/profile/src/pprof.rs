//! pprof output: the messages of `profile.proto` (github.com/google/pprof, proto/profile.proto)
//! declared with prost's derives, field numbers as there, gzip-compressed as pprof writes them.
//! Each distinct frame name is one `Function` and one `Location` (names, not addresses: the
//! stacks were symbolized already); a sample's locations are innermost first, as pprof wants,
//! and its thread name and process id are labels.

use std::collections::HashMap;
use std::io::Write;

use prost::Message;

use crate::profile::Profile;

#[derive(Clone, PartialEq, Message)]
pub struct PprofProfile {
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<PprofSample>,
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<PprofMapping>,
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    pub period: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct ValueType {
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct PprofSample {
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(int64, tag = "1")]
    pub key: i64,
    #[prost(int64, tag = "2")]
    pub str: i64,
    #[prost(int64, tag = "3")]
    pub num: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct PprofMapping {
    #[prost(uint64, tag = "1")]
    pub id: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Location {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Line {
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Function {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(int64, tag = "2")]
    pub name: i64,
    #[prost(int64, tag = "3")]
    pub system_name: i64,
}

/// What a profile's values are: pprof's sample types, e.g. `[("samples", "count"), ("cpu",
/// "nanoseconds")]`, and how to get each from the kernel's amount.
pub struct Kind {
    pub types: Vec<(&'static str, &'static str)>,
    /// Each sample type's factor on the stack's value of the same index (or its last value).
    pub scale: Vec<i64>,
    /// `period_type` and `period` (cpu: one sample is 1e9/HZ ns of CPU).
    pub period: Option<(&'static str, &'static str, i64)>,
}

#[derive(Default)]
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Strings {
        let mut s = Strings::default();
        s.id(""); // string_table[0] must be ""
        s
    }
    fn id(&mut self, s: &str) -> i64 {
        if let Some(i) = self.index.get(s) {
            return *i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

/// The profile as a pprof message.
pub fn build(profile: &Profile, kind: &Kind, time_nanos: i64, duration_nanos: i64) -> PprofProfile {
    let mut strings = Strings::new();
    let sample_type = kind
        .types
        .iter()
        .map(|(t, u)| ValueType {
            r#type: strings.id(t),
            unit: strings.id(u),
        })
        .collect();
    let mut locations: HashMap<String, u64> = HashMap::new();
    let mut location = Vec::new();
    let mut function = Vec::new();
    let mut sample: Vec<PprofSample> = Vec::new();
    // Stacks that differ only in addresses inside the same functions are one sample.
    let mut merged: HashMap<(Vec<u64>, u32, String), usize> = HashMap::new();
    let (comm_key, pid_key) = (strings.id("comm"), strings.id("pid"));
    for s in &profile.samples {
        let mut ids = Vec::new();
        for f in s.frames(false).iter().rev() {
            let id = match locations.get(*f) {
                Some(id) => *id,
                None => {
                    let id = location.len() as u64 + 1;
                    let name = strings.id(f);
                    function.push(Function {
                        id,
                        name,
                        system_name: name,
                    });
                    location.push(Location {
                        id,
                        line: vec![Line { function_id: id }],
                    });
                    locations.insert(f.to_string(), id);
                    id
                }
            };
            ids.push(id);
        }
        // Sample type i from the stack's value i (or its last one: cpu's two types, samples and
        // nanoseconds, both come from the one count).
        let value: Vec<i64> = kind
            .scale
            .iter()
            .enumerate()
            .map(|(i, k)| {
                (s.values
                    .get(i)
                    .or(s.values.last())
                    .copied()
                    .unwrap_or(s.value) as i64)
                    .saturating_mul(*k)
            })
            .collect();
        if let Some(&i) = merged.get(&(ids.clone(), s.tgid, s.comm.clone())) {
            for (sum, v) in sample[i].value.iter_mut().zip(value) {
                *sum = sum.saturating_add(v);
            }
            continue;
        }
        merged.insert((ids.clone(), s.tgid, s.comm.clone()), sample.len());
        let label = vec![
            Label {
                key: comm_key,
                str: strings.id(&s.comm),
                num: 0,
            },
            Label {
                key: pid_key,
                str: 0,
                num: i64::from(s.tgid),
            },
        ];
        sample.push(PprofSample {
            location_id: ids,
            value,
            label,
        });
    }
    let (period_type, period) = match kind.period {
        Some((t, u, p)) => (
            Some(ValueType {
                r#type: strings.id(t),
                unit: strings.id(u),
            }),
            p,
        ),
        None => (None, 0),
    };
    PprofProfile {
        sample_type,
        sample,
        mapping: Vec::new(),
        location,
        function,
        string_table: strings.table,
        time_nanos,
        duration_nanos,
        period_type,
        period,
    }
}

/// Write `p` gzip-compressed.
pub fn write(p: &PprofProfile, out: impl Write) -> std::io::Result<()> {
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    gz.write_all(&p.encode_to_vec())?;
    gz.finish()?;
    Ok(())
}

/// Read a (gzip-compressed or plain) pprof file back.
pub fn read(bytes: &[u8]) -> Result<PprofProfile, Box<dyn std::error::Error + Send + Sync>> {
    let plain = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut v)?;
        v
    } else {
        bytes.to_vec()
    };
    Ok(PprofProfile::decode(plain.as_slice())?)
}
