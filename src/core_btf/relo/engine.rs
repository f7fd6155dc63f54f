//! [`Relocator`]: one object's relocations against one target BTF — candidate search and
//! cache, resolution (`bpf_core_calc_relo_insn`), patching — and the per-relocation report
//! ([`Applied`]).

use super::super::types::{Kind, TypeId};
use super::super::{Btf, BtfError};
use super::calc::{resolution, Resolution};
use super::compat::{essential_name, kind_core_compat};
use super::patch::{patch, Patch};
use super::spec::Spec;
use super::{Cause, CoreRelo, Fail, RelocError, RelocKind, RelocSite, Res};
use crate::insn::RawInsn;
use std::collections::HashMap;
use std::sync::OnceLock;

/// A target BTF prepared for candidate search: its name index (built by [`Btf`] on first
/// use) plus an index of its `___flavor`-named types, built on first use too. Share one
/// between the [`Relocator`]s of several objects relocated for the same kernel.
#[derive(Debug)]
pub struct CoreTarget<'a> {
    btf: &'a Btf,
    flavored: OnceLock<HashMap<String, Vec<TypeId>>>,
}

impl<'a> CoreTarget<'a> {
    /// A target for `btf`; the indexes are built on first use.
    pub fn new(btf: &'a Btf) -> CoreTarget<'a> {
        CoreTarget { btf, flavored: OnceLock::new() }
    }

    /// The target's BTF.
    pub fn btf(&self) -> &'a Btf {
        self.btf
    }

    /// The target's types of a kind compatible with `kind` (the same, or both enums) whose
    /// essential name is `essential` (libbpf's `bpf_core_add_cands`), in id order.
    pub fn candidates(&self, essential: &str, kind: Kind) -> Vec<TypeId> {
        let flavored = self.flavored.get_or_init(|| {
            let mut map: HashMap<String, Vec<TypeId>> = HashMap::new();
            // Only names with `___` have an essential name shorter than themselves; the name
            // index lists them (built once per Btf, shared by every relocator on it).
            let base_ids = self.btf.base().into_iter().flat_map(|b| b.flavored_ids());
            for id in base_ids.chain(self.btf.flavored_ids()) {
                let Ok(name) = self.btf.name_of(id) else { continue };
                let e = essential_name(name);
                if e.len() != name.len() {
                    map.entry(e.to_string()).or_default().push(id);
                }
            }
            map
        });
        let flavors = flavored.get(essential).map(Vec::as_slice).unwrap_or_default();
        let mut ids: Vec<TypeId> = self
            .btf
            .find_by_name(essential)
            .into_iter()
            .chain(flavors.iter().copied())
            .filter(|&id| self.btf.kind_of(id).is_ok_and(|k| kind_core_compat(k, kind)))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// Relocates the instructions of one object (whose own BTF is `local`) for one target.
/// Candidate lists are cached per local type for the relocator's lifetime, as libbpf caches
/// them for one object: relocate all of an object's sections, in `.BTF.ext` order, with the
/// same relocator to get libbpf's results.
#[derive(Debug)]
pub struct Relocator<'a> {
    local: &'a Btf,
    target: &'a CoreTarget<'a>,
    cands: HashMap<TypeId, Vec<TypeId>>,
}

/// What happened to one relocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Where the relocated instruction is.
    pub site: RelocSite,
    /// What the relocation asks for (`BPF_CORE_FIELD_BYTE_OFFSET`, …).
    pub kind: RelocKind,
    /// The local access, as libbpf prints a spec.
    pub spec: String,
    /// The matched target access (`None` when no candidate matched).
    pub target: Option<String>,
    /// Patched or poisoned.
    pub outcome: Outcome,
}

/// The instruction's fate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The immediate, offset or 64-bit value went from `old` (what the compiler emitted for
    /// the local BTF) to `new`; `size` is `(old, new)` bytes when a load/store was resized.
    Patched {
        /// The value the compiler emitted for the local BTF.
        old: u64,
        /// The value for the target kernel's BTF.
        new: u64,
        /// The load/store size `(old, new)` in bytes, when it was resized.
        size: Option<(u32, u32)>,
    },
    /// No candidate matched (or the field changed size unsafely): the instruction is now
    /// `call 0xbad2310` ([`super::POISON_CALL_IMM`]).
    Poisoned,
}

impl Applied {
    /// Whether no candidate matched and the instruction was poisoned.
    pub fn is_poisoned(&self) -> bool {
        self.outcome == Outcome::Poisoned
    }
}

/// The poisoned relocation behind a verifier complaint at `slot` of `section` (the slot of a
/// poisoned instruction, or the second slot of a poisoned `ld_imm64`).
pub fn find_poisoned<'r>(applied: &'r [Applied], section: &str, slot: usize) -> Option<&'r Applied> {
    applied
        .iter()
        .filter(|a| a.is_poisoned() && a.site.section == section)
        .find(|a| a.site.slot == slot || a.site.slot + 1 == slot)
}

impl<'a> Relocator<'a> {
    /// A relocator for the object whose BTF is `local`, against `target`.
    pub fn new(local: &'a Btf, target: &'a CoreTarget<'a>) -> Relocator<'a> {
        Relocator { local, target, cands: HashMap::new() }
    }

    /// The target this relocator resolves against.
    pub fn target(&self) -> &'a CoreTarget<'a> {
        self.target
    }

    /// The target candidates of local type `local_type` (essential name and kind), as now
    /// cached: relocations that matched only some candidates have pruned the list.
    pub fn candidates(&mut self, local_type: TypeId) -> Result<&[TypeId], BtfError> {
        if !self.cands.contains_key(&local_type) {
            let found = self.find_candidates(local_type)?;
            self.cands.insert(local_type, found);
        }
        Ok(self.cands.get(&local_type).map(Vec::as_slice).unwrap_or_default())
    }

    fn find_candidates(&self, local_type: TypeId) -> Result<Vec<TypeId>, BtfError> {
        let kind = self.local.kind_of(local_type)?;
        let name = essential_name(self.local.name_of(local_type)?);
        if name.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.target.candidates(name, kind))
    }

    /// Relocate one section: apply `relos` (that section's `.BTF.ext` records, in order) to
    /// `insns` (its instructions). Stops at the first relocation that fails, as libbpf does.
    pub fn relocate(
        &mut self,
        section: &str,
        insns: &mut [RawInsn],
        relos: &[CoreRelo],
    ) -> Result<Vec<Applied>, RelocError> {
        relos.iter().enumerate().map(|(index, relo)| self.apply(section, index, insns, relo)).collect()
    }

    /// Resolve and apply relocation number `index` of `section`.
    pub fn apply(
        &mut self,
        section: &str,
        index: usize,
        insns: &mut [RawInsn],
        relo: &CoreRelo,
    ) -> Result<Applied, RelocError> {
        let site = RelocSite { section: section.to_string(), index, slot: (relo.insn_off / 8) as usize };
        let local = self.local;
        let fail = |spec: String, f: Fail| RelocError {
            site: Some(site.clone()),
            kind: relo.kind,
            spec,
            cause: f.cause,
            reason: f.reason,
        };
        // Before the local spec exists, the relocation is described as libbpf does then.
        let raw = || {
            let name = local.type_by_id(relo.type_id).map(|t| format!("{} {}", t.kind(), t.name)).unwrap_or_default();
            format!("[{}] {name} + {}", relo.type_id.0, relo.access)
        };
        if !relo.insn_off.is_multiple_of(8) {
            let f = Fail::new(Cause::Instruction, format!("insn_off {} is not a multiple of 8", relo.insn_off));
            return Err(fail(raw(), f));
        }
        let spec = Spec::parse(local, relo).map_err(|f| fail(raw(), f))?;
        let spec_text = spec.to_string();
        let (res, target) = self.resolve(relo, &spec).map_err(|f| fail(spec_text.clone(), f))?;
        let outcome = match patch(insns, site.slot, &res).map_err(|f| fail(spec_text.clone(), f))? {
            Patch::Value { old, new, size } => Outcome::Patched { old, new, size },
            Patch::Poisoned => Outcome::Poisoned,
        };
        Ok(Applied { site, kind: relo.kind, spec: spec_text, target, outcome })
    }

    /// `bpf_core_calc_relo_insn`: the resolution of `relo` (whose local spec is `local`) and
    /// the matched target spec's description.
    fn resolve(&mut self, relo: &CoreRelo, local: &Spec<'_>) -> Res<(Resolution, Option<String>)> {
        if relo.kind == RelocKind::TypeIdLocal {
            let id = local.root.0 as u64;
            return Ok((Resolution { orig_val: id, new_val: id, validate: false, ..Resolution::default() }, None));
        }
        if self.local.name_of(relo.type_id)?.is_empty() {
            return Err(Fail::new(Cause::Unsupported, "CO-RE relocations of anonymous types are not supported"));
        }
        let target = self.target.btf();
        let cands = self.candidates(relo.type_id)?.to_vec();
        let mut kept = Vec::with_capacity(cands.len());
        let mut chosen: Option<(Resolution, Spec<'_>)> = None;
        for cand in cands {
            let Some(cand_spec) = local.match_candidate(target, cand)? else { continue };
            let res = resolution(relo.kind, local, Some(&cand_spec))?;
            match &chosen {
                None => chosen = Some((res, cand_spec)),
                Some((first, first_spec)) => {
                    if cand_spec.bit_offset != first_spec.bit_offset {
                        return Err(Fail::new(
                            Cause::Ambiguous,
                            format!(
                                "field offset ambiguity: {} != {} (candidates {first_spec} and {cand_spec})",
                                cand_spec.bit_offset, first_spec.bit_offset
                            ),
                        ));
                    }
                    if res.poison != first.poison || res.new_val != first.new_val {
                        let word = |r: &Resolution| if r.poison { "failure" } else { "success" };
                        return Err(Fail::new(
                            Cause::Ambiguous,
                            format!(
                                "relocation decision ambiguity: {} {} != {} {} (candidates {cand_spec} and {first_spec})",
                                word(&res),
                                res.new_val,
                                word(first),
                                first.new_val
                            ),
                        ));
                    }
                }
            }
            kept.push(cand);
        }
        if !kept.is_empty() {
            // Later relocations of this type consider only the candidates that matched.
            self.cands.insert(relo.type_id, kept);
        }
        match chosen {
            Some((res, spec)) => Ok((res, Some(spec.to_string()))),
            None => Ok((resolution(relo.kind, local, None)?, None)),
        }
    }
}
