//! The value a relocation stands for, computed from a spec (libbpf's
//! `bpf_core_calc_field_relo`, `_type_relo`, `_enumval_relo` and `bpf_core_calc_relo`).
//! Arithmetic is on 32-bit unsigned integers where libbpf's is, so that out-of-range results
//! wrap to the same values.

use super::super::types::{IntEncoding, TypeDetail, TypeId, MAX_DEPTH};
use super::super::{Btf, BtfError};
use super::compat::skip_mods;
use super::spec::Spec;
use super::{Cause, Fail, RelocKind};

/// The outcome of resolving one relocation (libbpf's `struct bpf_core_relo_res`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Resolution {
    /// The value the compiler emitted (from the local BTF), checked against the instruction
    /// when `validate`.
    pub orig_val: u64,
    /// The value to write.
    pub new_val: u64,
    /// No candidate matched and the kind has no "absent" value: poison the instruction.
    pub poison: bool,
    pub validate: bool,
    /// The field's size changed in a way a load/store cannot follow (signed, or not an
    /// integer or pointer): poison loads and stores of it.
    pub fail_memsz_adjust: bool,
    /// Load/store sizes for `FIELD_BYTE_OFFSET` of a non-bitfield: local and target.
    pub orig_sz: u32,
    pub orig_type: TypeId,
    pub new_sz: u32,
    pub new_type: TypeId,
}

/// Why a value could not be computed: poisoning is requested, or the relocation fails.
#[derive(Debug)]
pub(crate) enum Bad {
    Poison,
    Fail(Fail),
}

impl From<Fail> for Bad {
    fn from(f: Fail) -> Bad {
        Bad::Fail(f)
    }
}

impl From<BtfError> for Bad {
    fn from(e: BtfError) -> Bad {
        Bad::Fail(e.into())
    }
}

/// A field relocation's value for one side.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FieldValue {
    pub val: u64,
    /// Size of the scalar a load of the field reads (arrays: their element), for byte offsets.
    pub field_sz: u32,
    pub type_id: TypeId,
    pub validate: bool,
    /// The field is a bitfield.
    pub bitfield: bool,
}

/// Skip modifiers, typedefs and array dimensions: the scalar (or struct) an array holds.
fn innermost_element(btf: &Btf, id: TypeId) -> Result<TypeId, BtfError> {
    let mut id = btf.resolve(id)?;
    for _ in 0..MAX_DEPTH {
        match btf.type_by_id(id)?.detail {
            TypeDetail::Array { elem, .. } => id = btf.resolve(elem)?,
            _ => return Ok(id),
        }
    }
    Err(BtfError::TooDeep { id: id.0 })
}

fn unsupported(what: String) -> Bad {
    Bad::Fail(Fail::new(Cause::Unsupported, what))
}

/// `bpf_core_calc_field_relo`. `spec` is `None` when no candidate matched.
pub(crate) fn field_value(kind: RelocKind, spec: Option<&Spec<'_>>) -> Result<FieldValue, Bad> {
    let mut out = FieldValue { validate: true, ..FieldValue::default() };
    if kind == RelocKind::FieldExists {
        out.val = spec.is_some() as u64;
        return Ok(out);
    }
    let spec = spec.ok_or(Bad::Poison)?;
    let btf = spec.btf;
    let acc = *spec.acc.last().ok_or_else(|| unsupported("empty access".into()))?;

    if acc.name.is_none() {
        // The access ends at an array element (or the root object).
        match kind {
            RelocKind::FieldByteOffset => {
                out.val = (spec.bit_offset / 8) as u64;
                out.field_sz = btf.size_of(innermost_element(btf, acc.ty)?)? as u32;
                out.type_id = acc.ty;
            }
            RelocKind::FieldByteSize => out.val = btf.size_of(acc.ty)? as u32 as u64,
            _ => return Err(unsupported(format!("<{kind}> cannot be applied to an array element access"))),
        }
        return Ok(out);
    }

    let t = btf.type_by_id(acc.ty)?;
    let m = *t.members().get(acc.idx as usize).ok_or_else(|| unsupported("accessor past the members".into()))?;
    let (field_type, mt) = skip_mods(btf, m.ty)?;
    let bit_off = spec.bit_offset;
    let mut bit_sz = m.bitfield_size as u32;
    let bitfield = bit_sz > 0;
    let (byte_off, byte_sz);
    if bitfield {
        let mut sz = mt.size().filter(|&s| s > 0).ok_or_else(|| {
            unsupported(format!("bitfield '{}' of [{}] {} has no size", m.name, field_type.0, mt.kind()))
        })?;
        let mut off = bit_off / 8 / sz * sz;
        // The smallest load (1, 2, 4, 8 bytes) of naturally aligned bytes holding the bits.
        while bit_off.wrapping_add(bit_sz).wrapping_sub(off.wrapping_mul(8)) > sz.wrapping_mul(8) {
            if sz >= 8 {
                return Err(unsupported(format!("bitfield '{}' cannot be read with a 64-bit load", m.name)));
            }
            sz *= 2;
            off = bit_off / 8 / sz * sz;
        }
        (byte_off, byte_sz) = (off, sz);
    } else {
        byte_sz = btf.size_of(field_type)? as u32;
        byte_off = bit_off / 8;
        bit_sz = byte_sz.wrapping_mul(8);
    }
    out.validate = !bitfield;
    out.bitfield = bitfield;
    out.val = match kind {
        RelocKind::FieldByteOffset => {
            if !bitfield {
                out.field_sz = btf.size_of(innermost_element(btf, field_type)?)? as u32;
                out.type_id = field_type;
            }
            byte_off as u64
        }
        RelocKind::FieldByteSize => byte_sz as u64,
        RelocKind::FieldSigned => {
            out.validate = true;
            let signed = match mt.detail {
                TypeDetail::Enum { signed, .. } | TypeDetail::Enum64 { signed, .. } => signed,
                TypeDetail::Int { encoding, .. } => encoding == IntEncoding::Signed,
                _ => false,
            };
            signed as u64
        }
        // Little-endian: the field's top bit goes to bit 63.
        RelocKind::FieldLshiftU64 => {
            64u32.wrapping_sub(bit_off.wrapping_add(bit_sz).wrapping_sub(byte_off.wrapping_mul(8))) as u64
        }
        RelocKind::FieldRshiftU64 => {
            out.validate = true;
            64u32.wrapping_sub(bit_sz) as u64
        }
        _ => return Err(unsupported(format!("<{kind}> is not a field relocation"))),
    };
    Ok(out)
}

/// `bpf_core_calc_type_relo`: (value, validate). Absent types give 0.
pub(crate) fn type_value(kind: RelocKind, spec: Option<&Spec<'_>>) -> Result<(u64, bool), Bad> {
    let Some(spec) = spec else { return Ok((0, true)) };
    Ok(match kind {
        // Type ids change when objects are linked: not checked against the instruction.
        RelocKind::TypeIdTarget => (spec.root.0 as u64, false),
        RelocKind::TypeExists | RelocKind::TypeMatches => (1, true),
        RelocKind::TypeSize => (spec.btf.size_of(spec.root)? as u32 as u64, true),
        _ => return Err(unsupported(format!("<{kind}> is not computed from a type spec"))),
    })
}

/// `bpf_core_calc_enumval_relo`. A 32-bit enumerator is sign-extended to 64 bits whatever the
/// enum's signedness (libbpf reads `btf_enum.val` as `__s32`).
pub(crate) fn enumval_value(kind: RelocKind, spec: Option<&Spec<'_>>) -> Result<u64, Bad> {
    match kind {
        RelocKind::EnumvalExists => Ok(spec.is_some() as u64),
        RelocKind::EnumvalValue => {
            let spec = spec.ok_or(Bad::Poison)?;
            let acc = spec.acc.first().ok_or_else(|| unsupported("empty access".into()))?;
            let t = spec.btf.type_by_id(acc.ty)?;
            let v = t.enum_values().get(acc.idx as usize).ok_or_else(|| unsupported("enumerator index".into()))?;
            Ok(match t.detail {
                TypeDetail::Enum64 { .. } => v.value as u64,
                _ => v.value as u32 as i32 as i64 as u64,
            })
        }
        _ => Err(unsupported(format!("<{kind}> is not an enum relocation"))),
    }
}

/// `bpf_core_calc_relo`: local and target values of one relocation. `target` is `None` when
/// no candidate matched (existence kinds give 0, the others request poisoning).
pub(crate) fn resolution(kind: RelocKind, local: &Spec<'_>, target: Option<&Spec<'_>>) -> Result<Resolution, Fail> {
    let mut res = Resolution { validate: true, ..Resolution::default() };
    let outcome: Result<(), Bad> = (|| {
        if kind.is_field_based() {
            let l = field_value(kind, Some(local))?;
            (res.orig_val, res.orig_sz, res.orig_type, res.validate) = (l.val, l.field_sz, l.type_id, l.validate);
            let t = field_value(kind, target)?;
            (res.new_val, res.new_sz, res.new_type) = (t.val, t.field_sz, t.type_id);
            if res.orig_sz != res.new_sz {
                let target = target.map(|s| s.btf).unwrap_or(local.btf);
                res.fail_memsz_adjust = !size_change_is_safe(local.btf, res.orig_type, target, res.new_type)?;
            }
        } else if kind.is_type_based() {
            (res.orig_val, res.validate) = type_value(kind, Some(local))?;
            res.new_val = type_value(kind, target)?.0;
        } else {
            res.orig_val = enumval_value(kind, Some(local))?;
            res.new_val = enumval_value(kind, target)?;
        }
        Ok(())
    })();
    match outcome {
        Ok(()) => Ok(res),
        Err(Bad::Poison) => {
            res.poison = true;
            Ok(res)
        }
        Err(Bad::Fail(f)) => Err(f),
    }
}

/// A load or store may change size when the field is a pointer on both sides, or an unsigned
/// integer on both sides (zero extension keeps the value).
fn size_change_is_safe(local: &Btf, lt: TypeId, target: &Btf, tt: TypeId) -> Result<bool, BtfError> {
    let (l, t) = (local.type_by_id(lt)?, target.type_by_id(tt)?);
    Ok(match (&l.detail, &t.detail) {
        (TypeDetail::Ptr { .. }, TypeDetail::Ptr { .. }) => true,
        (TypeDetail::Int { encoding: le, .. }, TypeDetail::Int { encoding: te, .. }) => {
            *le != IntEncoding::Signed && *te != IntEncoding::Signed
        }
        _ => false,
    })
}
