//! [`resolve_named`]: a CO-RE value asked for by names rather than by a local BTF, for
//! bpfkit's own assembler forms (`core_field_offset(r1, "task_struct", "real_parent.tgid")`).
//! The target side is the same code a [`super::Relocator`] runs: candidates by essential name,
//! member lookup through anonymous members, array bounds (flexible arrays included), the
//! value computations, and the rule that several candidates must agree.

use super::super::types::{Kind, TypeId};
use super::super::Btf;
use super::calc::{enumval_value, field_value, type_value, Bad};
use super::compat::essential_name;
use super::engine::CoreTarget;
use super::spec::{PathStep, Spec};
use super::{Cause, Fail, RelocError, RelocKind};

/// A resolved value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelocValue {
    /// The value: a byte offset or size, 0/1 for existence and signedness, a shift count, a
    /// target type id, an enumerator's value (64-bit two's complement).
    pub value: u64,
    /// Whether a target type (and field, enumerator) matched. When none did, existence
    /// relocations are 0 and `TYPE_SIZE` / `TYPE_ID_TARGET` are 0, as in libbpf.
    pub found: bool,
    /// For `FIELD_BYTE_OFFSET` of a field that is not a bitfield: the bytes a load of it reads
    /// (an array's element size for arrays), for choosing the load's size.
    pub load_size: Option<u32>,
    /// The target type that matched (the first, when several agree).
    pub target_type: Option<TypeId>,
}

/// Resolve one CO-RE value against `target` by names.
///
/// * `type_name`: `task_struct`, or with its kind `struct task_struct` / `union bpf_attr` /
///   `enum pid_type` / `typedef pid_t`; a `___flavor` suffix is ignored, as in C. A bare name
///   considers structs, unions and typedefs for field kinds, enums and typedefs for enum kinds,
///   and any named struct, union, enum, typedef, integer or float for type kinds.
/// * `field_path`: for field kinds, members from the type, `.`-separated, with array indexes:
///   `real_parent.tgid`, `signal.rlim[7].rlim_cur`, `comm[2]` (members of anonymous structs
///   and unions are named directly, as in C; `""` is the whole object). For
///   `ENUMVAL_EXISTS` / `ENUMVAL_VALUE`, the enumerator's name. For type kinds, `""`.
/// * `kind`: any kind but `TYPE_ID_LOCAL` and `TYPE_MATCHES`, which need a local type.
///
/// Errors: a malformed request, a kind without a local meaning, candidates that disagree
/// ([`Cause::Ambiguous`]), and — for kinds whose absence has no value (field offsets, sizes,
/// shifts, signedness, enumerator values) — nothing matching ([`Cause::NotFound`]); code
/// generation may then poison the instruction as libbpf does ([`super::POISON_CALL_IMM`]).
///
/// Each call indexes the target's flavored names once; to resolve many values, keep a
/// [`CoreTarget`] and call [`CoreTarget::resolve_named`].
pub fn resolve_named(
    target: &Btf,
    type_name: &str,
    field_path: &str,
    kind: RelocKind,
) -> Result<RelocValue, RelocError> {
    CoreTarget::new(target).resolve_named(type_name, field_path, kind)
}

impl CoreTarget<'_> {
    /// [`resolve_named`] with this target's indexes.
    pub fn resolve_named(&self, type_name: &str, field_path: &str, kind: RelocKind) -> Result<RelocValue, RelocError> {
        let err = |f: Fail| RelocError {
            site: None,
            kind,
            spec: match field_path {
                "" => type_name.to_string(),
                p if kind.is_enumval_based() => format!("{type_name}::{p}"),
                p => format!("{type_name}.{p}"),
            },
            cause: f.cause,
            reason: f.reason,
        };
        self.named(type_name, field_path, kind).map_err(err)
    }

    fn named(&self, type_name: &str, field_path: &str, kind: RelocKind) -> Result<RelocValue, Fail> {
        let target = self.btf();
        if matches!(kind, RelocKind::TypeIdLocal | RelocKind::TypeMatches) {
            return Err(Fail::new(Cause::Unsupported, format!("<{kind}> needs a local type, not a name")));
        }
        let (kinds, name) = split_type_name(type_name, kind)?;
        let steps = if kind.is_field_based() { parse_path(field_path)? } else { Vec::new() };
        if kind.is_type_based() && !field_path.is_empty() {
            return Err(Fail::new(Cause::BadSpec, format!("<{kind}> takes no field path (got \"{field_path}\")")));
        }
        let mut cands: Vec<TypeId> = kinds.iter().flat_map(|&k| self.candidates(essential_name(name), k)).collect();
        cands.sort_unstable();
        cands.dedup();

        let mut chosen: Option<(RelocValue, u32)> = None;
        for cand in cands {
            let spec = if kind.is_field_based() {
                Spec::from_names(target, cand, kind, &steps)?
            } else if kind.is_enumval_based() {
                Spec::enumerator(target, cand, kind, field_path)?
            } else {
                Some(Spec::empty(target, cand, kind))
            };
            let Some(spec) = spec else { continue };
            let (value, load_size) = value_of(kind, &spec)?;
            let v = RelocValue { value, found: true, load_size, target_type: Some(cand) };
            match chosen {
                None => chosen = Some((v, spec.bit_offset)),
                Some((first, bits)) if bits != spec.bit_offset || first.value != value => {
                    return Err(Fail::new(
                        Cause::Ambiguous,
                        format!(
                            "candidates [{}] and [{}] disagree: {} at bit {bits} vs {value} at bit {}",
                            first.target_type.map_or(0, |t| t.0),
                            cand.0,
                            first.value,
                            spec.bit_offset
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some((v, _)) = chosen {
            return Ok(v);
        }
        match kind {
            RelocKind::FieldExists
            | RelocKind::TypeExists
            | RelocKind::EnumvalExists
            | RelocKind::TypeSize
            | RelocKind::TypeIdTarget => Ok(RelocValue { value: 0, found: false, load_size: None, target_type: None }),
            _ => Err(Fail::new(Cause::NotFound, "no type, field or enumerator of the target matches")),
        }
    }
}

/// The value of `kind` for a matched target spec, and the load size of a byte offset.
fn value_of(kind: RelocKind, spec: &Spec<'_>) -> Result<(u64, Option<u32>), Fail> {
    let value = if kind.is_field_based() {
        field_value(kind, Some(spec)).map(|f| {
            let load = (kind == RelocKind::FieldByteOffset && !f.bitfield).then_some(f.field_sz);
            (f.val, load)
        })
    } else if kind.is_type_based() {
        type_value(kind, Some(spec)).map(|(v, _)| (v, None))
    } else {
        enumval_value(kind, Some(spec)).map(|v| (v, None))
    };
    value.map_err(|b| match b {
        Bad::Fail(f) => f,
        Bad::Poison => Fail::new(Cause::NotFound, "no value"),
    })
}

/// `struct foo` → ([Struct], "foo"); a bare name → the kinds `kind` may start from.
fn split_type_name(type_name: &str, kind: RelocKind) -> Result<(&'static [Kind], &str), Fail> {
    let type_name = type_name.trim();
    let prefixed: [(&str, &'static [Kind]); 4] = [
        ("struct ", &[Kind::Struct]),
        ("union ", &[Kind::Union]),
        ("enum ", &[Kind::Enum, Kind::Enum64]),
        ("typedef ", &[Kind::Typedef]),
    ];
    let (kinds, name) =
        prefixed.iter().find_map(|(p, k)| type_name.strip_prefix(p).map(|n| (*k, n.trim()))).unwrap_or_else(|| {
            let kinds: &'static [Kind] = if kind.is_field_based() {
                &[Kind::Struct, Kind::Union, Kind::Typedef]
            } else if kind.is_enumval_based() {
                &[Kind::Enum, Kind::Enum64, Kind::Typedef]
            } else {
                &[Kind::Struct, Kind::Union, Kind::Enum, Kind::Enum64, Kind::Typedef, Kind::Int, Kind::Float]
            };
            (kinds, type_name)
        });
    if !is_identifier(name) || ["struct", "union", "enum", "typedef"].contains(&name) {
        return Err(Fail::new(Cause::BadSpec, format!("\"{type_name}\" is not a type name")));
    }
    Ok((kinds, name))
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `a.b[2][3].c` → [Member(a), Member(b), Index(2), Index(3), Member(c)].
fn parse_path(path: &str) -> Result<Vec<PathStep<'_>>, Fail> {
    let bad = |why: &str| Fail::new(Cause::BadSpec, format!("field path \"{path}\": {why}"));
    let mut steps = Vec::new();
    if path.is_empty() {
        return Ok(steps);
    }
    for component in path.split('.') {
        let (name, mut rest) = component.split_at(component.find('[').unwrap_or(component.len()));
        if !is_identifier(name) {
            return Err(bad(&format!("\"{component}\" does not start with a member name")));
        }
        steps.push(PathStep::Member(name));
        while let Some(after) = rest.strip_prefix('[') {
            let close = after.find(']').ok_or_else(|| bad("unclosed '['"))?;
            let idx = after[..close].trim().parse().map_err(|_| bad(&format!("bad index \"{}\"", &after[..close])))?;
            steps.push(PathStep::Index(idx));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            return Err(bad(&format!("unexpected \"{rest}\"")));
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(parse_path("").unwrap(), vec![]);
        assert_eq!(
            parse_path("a.b[2][3].c").unwrap(),
            vec![
                PathStep::Member("a"),
                PathStep::Member("b"),
                PathStep::Index(2),
                PathStep::Index(3),
                PathStep::Member("c")
            ]
        );
        for bad in ["a..b", ".a", "a[", "a[x]", "a[1]b", "[1]", "1a"] {
            assert_eq!(parse_path(bad).map_err(|f| f.cause), Err(Cause::BadSpec), "{bad}");
        }
    }

    #[test]
    fn type_names() {
        assert_eq!(
            split_type_name("struct task_struct", RelocKind::FieldByteOffset).unwrap(),
            (&[Kind::Struct][..], "task_struct")
        );
        assert_eq!(split_type_name("pid_type", RelocKind::EnumvalValue).unwrap().1, "pid_type");
        assert!(split_type_name("struct", RelocKind::TypeSize).is_err());
        assert!(split_type_name("a b", RelocKind::TypeSize).is_err());
    }
}
