//! A kernel's BTF cut down to the types pfn-auditor reads, as a seed for the `btf` fuzz target: a
//! whole vmlinux BTF is ~5 MiB, which libFuzzer would mutate and re-parse at a few executions a
//! second; the trimmed blob is tens of KiB and holds everything `probes/layout.rs` looks at.
//!
//! Kept: every struct, union, enum and function whose name is in `keep`, the anonymous structs and
//! unions inside them (layout.rs looks through those), and the types their members and parameters
//! are made of, except that a named struct or union that is not kept becomes a forward declaration
//! of the same name (`struct mm_struct *` stays a pointer to something named `mm_struct`).
//! [`Members::All`] keeps every member of a kept struct; [`Members::Named`] only the members whose
//! name is in `keep` and the anonymous ones: each member carries its own bit offset and a struct
//! its size, so layout.rs reads the same offsets from a blob a fifth the size (the fuzz seed; the
//! whole-member blob is run once as a regression input). Format: include/uapi/linux/btf.h
//! (little-endian only).
use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{Context, Result, bail};

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;

// BTF kinds (include/uapi/linux/btf.h).
const INT: u32 = 1;
const PTR: u32 = 2;
const ARRAY: u32 = 3;
const STRUCT: u32 = 4;
const UNION: u32 = 5;
const ENUM: u32 = 6;
const FWD: u32 = 7;
const TYPEDEF: u32 = 8;
const VOLATILE: u32 = 9;
const CONST: u32 = 10;
const RESTRICT: u32 = 11;
const FUNC: u32 = 12;
const FUNC_PROTO: u32 = 13;
const VAR: u32 = 14;
const DATASEC: u32 = 15;
const FLOAT: u32 = 16;
const DECL_TAG: u32 = 17;
const TYPE_TAG: u32 = 18;
const ENUM64: u32 = 19;

/// One `struct btf_type` and the kind-specific words after it.
#[derive(Clone, Debug)]
struct BtfType {
    name_off: u32,
    info: u32,
    size_or_type: u32,
    extra: Vec<u32>,
}

impl BtfType {
    fn kind(&self) -> u32 {
        (self.info >> 24) & 0x1f
    }

    fn vlen(&self) -> usize {
        (self.info & 0xffff) as usize
    }

    /// Words per `vlen` entry after the type, and the words of the single extra record.
    fn extra_words(kind: u32, vlen: usize) -> Result<usize> {
        Ok(match kind {
            PTR | FWD | TYPEDEF | VOLATILE | CONST | RESTRICT | FUNC | FLOAT | TYPE_TAG => 0,
            INT | VAR | DECL_TAG => 1,
            ARRAY => 3,
            STRUCT | UNION | DATASEC | ENUM64 => 3 * vlen,
            ENUM | FUNC_PROTO => 2 * vlen,
            other => bail!("unknown BTF kind {other}"),
        })
    }

    /// Type ids this type refers to.
    fn references(&self) -> Vec<u32> {
        match self.kind() {
            PTR | TYPEDEF | VOLATILE | CONST | RESTRICT | FUNC | TYPE_TAG | VAR | DECL_TAG => vec![self.size_or_type],
            ARRAY => vec![self.extra[0], self.extra[1]],
            STRUCT | UNION => self.extra.chunks(3).map(|m| m[1]).collect(),
            FUNC_PROTO => std::iter::once(self.size_or_type).chain(self.extra.chunks(2).map(|p| p[1])).collect(),
            DATASEC => self.extra.chunks(3).map(|v| v[0]).collect(),
            _ => Vec::new(),
        }
    }
}

/// A parsed BTF blob: types from id 1, and the string section.
struct Parsed {
    types: Vec<BtfType>,
    strings: Vec<u8>,
}

fn parse(blob: &[u8]) -> Result<Parsed> {
    let u32_at = |at: usize| -> Result<u32> {
        let bytes = blob.get(at..at + 4).context("BTF truncated")?;
        Ok(u32::from_le_bytes(bytes.try_into()?))
    };
    if blob.len() < HEADER_LEN || u16::from_le_bytes([blob[0], blob[1]]) != MAGIC {
        bail!("not little-endian BTF (no 0xeb9f magic)");
    }
    let hdr_len = u32_at(4)? as usize;
    let (type_off, type_len, str_off, str_len) = (u32_at(8)? as usize, u32_at(12)? as usize, u32_at(16)? as usize, u32_at(20)? as usize);
    let strings = blob.get(hdr_len + str_off..hdr_len + str_off + str_len).context("BTF string section outside the blob")?.to_vec();
    let (mut at, end) = (hdr_len + type_off, hdr_len + type_off + type_len);
    let mut types = Vec::new();
    while at < end {
        let (name_off, info, size_or_type) = (u32_at(at)?, u32_at(at + 4)?, u32_at(at + 8)?);
        at += 12;
        let mut t = BtfType { name_off, info, size_or_type, extra: Vec::new() };
        for _ in 0..BtfType::extra_words(t.kind(), t.vlen())? {
            t.extra.push(u32_at(at)?);
            at += 4;
        }
        types.push(t);
    }
    Ok(Parsed { types, strings })
}

impl Parsed {
    fn name(&self, off: u32) -> &[u8] {
        c_string(&self.strings, off)
    }

    /// Type `id` (1-based; 0 is void).
    fn get(&self, id: u32) -> Option<&BtfType> {
        id.checked_sub(1).and_then(|i| self.types.get(i as usize))
    }

    /// Removes from every struct and union the members that have a name not in `keep` (`vlen`
    /// follows; the struct's size and the other members' bit offsets stay).
    fn drop_unnamed_members(&mut self, keep: &HashSet<String>) {
        let strings = &self.strings;
        let wanted = |m: &[u32]| {
            let name = c_string(strings, m[0]);
            name.is_empty() || std::str::from_utf8(name).is_ok_and(|n| keep.contains(n))
        };
        for t in self.types.iter_mut().filter(|t| matches!(t.kind(), STRUCT | UNION)) {
            let extra: Vec<u32> = t.extra.chunks(3).filter(|m| wanted(m)).flatten().copied().collect();
            t.info = (t.info & !0xffff) | (extra.len() / 3) as u32;
            t.extra = extra;
        }
    }
}

/// The NUL-terminated string at `off` of a string section.
fn c_string(strings: &[u8], off: u32) -> &[u8] {
    let rest = strings.get(off as usize..).unwrap_or_default();
    &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
}

/// How a type is written to the trimmed blob.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Keep {
    /// A named struct or union reached but not asked for: a forward declaration.
    AsFwd,
    Whole,
}

/// Which members of a kept struct or union stay.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Members {
    All,
    /// Those named in `keep`, and the anonymous ones (which may hold a named one).
    Named,
}

/// `blob` with only the types named in `keep` and what they are made of (see the module doc).
pub fn trim(blob: &[u8], keep: &HashSet<String>, members: Members) -> Result<Vec<u8>> {
    let mut btf = parse(blob)?;
    if members == Members::Named {
        btf.drop_unnamed_members(keep);
    }
    let mut kept: BTreeMap<u32, Keep> = BTreeMap::new();
    let mut todo: Vec<u32> = Vec::new();
    for (i, t) in btf.types.iter().enumerate() {
        let asked = matches!(t.kind(), STRUCT | UNION | ENUM | ENUM64 | FUNC)
            && keep.contains(std::str::from_utf8(btf.name(t.name_off)).unwrap_or_default());
        if asked {
            kept.insert(i as u32 + 1, Keep::Whole);
            todo.push(i as u32 + 1);
        }
    }
    while let Some(id) = todo.pop() {
        let Some(t) = btf.get(id) else { continue };
        for r in t.references() {
            let Some(target) = btf.get(r) else { continue };
            let how = match target.kind() {
                STRUCT | UNION if target.name_off != 0 => Keep::AsFwd,
                _ => Keep::Whole,
            };
            let before = kept.get(&r).copied();
            if before.is_none_or(|b| b < how) {
                kept.insert(r, how);
                if how == Keep::Whole {
                    todo.push(r);
                }
            }
        }
    }
    let new_id: HashMap<u32, u32> = kept.keys().enumerate().map(|(i, &old)| (old, i as u32 + 1)).collect();
    let remap = |id: u32| if id == 0 { 0 } else { new_id.get(&id).copied().unwrap_or(0) };
    let mut strings = StringTable::default();
    let mut types = Vec::new();
    for (&id, &how) in &kept {
        let t = btf.get(id).expect("kept ids exist");
        let name = strings.add(btf.name(t.name_off));
        if how == Keep::AsFwd {
            let union_flag = u32::from(t.kind() == UNION) << 31;
            types.push(BtfType { name_off: name, info: (FWD << 24) | union_flag, size_or_type: 0, extra: Vec::new() });
            continue;
        }
        let mut out = BtfType { name_off: name, ..t.clone() };
        match t.kind() {
            PTR | TYPEDEF | VOLATILE | CONST | RESTRICT | FUNC | TYPE_TAG | VAR | DECL_TAG => out.size_or_type = remap(t.size_or_type),
            ARRAY => {
                out.extra[0] = remap(t.extra[0]);
                out.extra[1] = remap(t.extra[1]);
            }
            STRUCT | UNION => {
                for m in out.extra.chunks_mut(3) {
                    m[0] = strings.add(btf.name(m[0]));
                    m[1] = remap(m[1]);
                }
            }
            ENUM | ENUM64 => {
                let width = if t.kind() == ENUM { 2 } else { 3 };
                for v in out.extra.chunks_mut(width) {
                    v[0] = strings.add(btf.name(v[0]));
                }
            }
            FUNC_PROTO => {
                out.size_or_type = remap(t.size_or_type);
                for p in out.extra.chunks_mut(2) {
                    p[0] = strings.add(btf.name(p[0]));
                    p[1] = remap(p[1]);
                }
            }
            DATASEC => bail!("a data section is never part of a struct, enum or function"),
            _ => {}
        }
        types.push(out);
    }
    Ok(encode(&types, &strings.bytes))
}

/// A struct's name and its members' (name, bit offset).
#[cfg(test)]
pub type StructMembers = (String, Vec<(String, u32)>);

/// Every named struct and union of a blob in order: its name and its members' names and bit
/// offsets, the members of an anonymous member listed after it (named `.member`, at their offset in
/// the outer struct), as layout.rs looks through them.
#[cfg(test)]
pub fn struct_members(blob: &[u8]) -> Result<Vec<StructMembers>> {
    let btf = parse(blob)?;
    let text = |off| String::from_utf8_lossy(btf.name(off)).into_owned();
    fn flatten(btf: &Parsed, t: &BtfType, base: u32, depth: u32, prefix: &str, out: &mut Vec<(String, u32)>) {
        for m in t.extra.chunks(3) {
            let name = format!("{prefix}{}", String::from_utf8_lossy(btf.name(m[0])));
            out.push((name.clone(), base + m[2]));
            let mut inner = btf.get(m[1]);
            for _ in 0..32 {
                match inner {
                    Some(i) if matches!(i.kind(), CONST | VOLATILE | RESTRICT | TYPEDEF | TYPE_TAG) => inner = btf.get(i.size_or_type),
                    _ => break,
                }
            }
            if let Some(i) = inner.filter(|i| matches!(i.kind(), STRUCT | UNION) && i.name_off == 0 && m[0] == 0 && depth > 0) {
                flatten(btf, i, base + m[2], depth - 1, &format!("{name}."), out);
            }
        }
    }
    Ok(btf
        .types
        .iter()
        .filter(|t| matches!(t.kind(), STRUCT | UNION) && t.name_off != 0)
        .map(|t| {
            let mut members = Vec::new();
            flatten(&btf, t, 0, 8, "", &mut members);
            (text(t.name_off), members)
        })
        .collect())
}

/// The string section: offset 0 is the empty name.
struct StringTable {
    bytes: Vec<u8>,
    offsets: HashMap<Vec<u8>, u32>,
}

impl Default for StringTable {
    fn default() -> Self {
        Self { bytes: vec![0], offsets: HashMap::from([(Vec::new(), 0)]) }
    }
}

impl StringTable {
    fn add(&mut self, name: &[u8]) -> u32 {
        if let Some(&off) = self.offsets.get(name) {
            return off;
        }
        let off = self.bytes.len() as u32;
        self.bytes.extend_from_slice(name);
        self.bytes.push(0);
        self.offsets.insert(name.to_vec(), off);
        off
    }
}

fn encode(types: &[BtfType], strings: &[u8]) -> Vec<u8> {
    let mut type_bytes = Vec::new();
    for t in types {
        for word in [t.name_off, t.info, t.size_or_type].iter().chain(&t.extra) {
            type_bytes.extend_from_slice(&word.to_le_bytes());
        }
    }
    let mut out = Vec::with_capacity(HEADER_LEN + type_bytes.len() + strings.len());
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&[1, 0]); // version 1, no flags
    for word in [HEADER_LEN as u32, 0, type_bytes.len() as u32, type_bytes.len() as u32, strings.len() as u32] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(&type_bytes);
    out.extend_from_slice(strings);
    out
}

/// The `.BTF` section of a 64-bit little-endian ELF file (a vmlinux).
pub fn elf_section<'a>(elf: &'a [u8], wanted: &str) -> Result<&'a [u8]> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        bail!("not a 64-bit little-endian ELF file");
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u64_at = |o: usize| -> Result<usize> { Ok(u64::from_le_bytes(elf.get(o..o + 8).context("ELF truncated")?.try_into()?) as usize) };
    let (shoff, shentsize, shnum, shstrndx) = (u64_at(0x28)?, u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
    let section = |i: usize| -> Result<(usize, &'a [u8])> {
        let at = shoff + i * shentsize;
        let name = u32::from_le_bytes(elf.get(at..at + 4).context("ELF section header truncated")?.try_into()?) as usize;
        let (offset, size) = (u64_at(at + 0x18)?, u64_at(at + 0x20)?);
        Ok((name, elf.get(offset..offset + size).context("ELF section outside the file")?))
    };
    let (_, names) = section(shstrndx)?;
    for i in 0..shnum {
        let (name, data) = section(i)?;
        let name = names.get(name..).unwrap_or_default();
        if name.starts_with(wanted.as_bytes()) && name.get(wanted.len()) == Some(&0) {
            return Ok(data);
        }
    }
    bail!("no {wanted} section")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF of: int, struct outer { int a; struct { int b; }; struct other *p; }, struct other,
    /// and an unrelated struct.
    fn sample() -> Vec<u8> {
        let mut s = StringTable::default();
        let (int, outer, other, unrelated, a, b, p) =
            (s.add(b"int"), s.add(b"outer"), s.add(b"other"), s.add(b"unrelated"), s.add(b"a"), s.add(b"b"), s.add(b"p"));
        let t = |name_off, kind: u32, vlen: u32, size_or_type, extra: Vec<u32>| BtfType {
            name_off,
            info: (kind << 24) | vlen,
            size_or_type,
            extra,
        };
        let types = [
            t(int, INT, 0, 4, vec![32]),                                // 1
            t(0, STRUCT, 1, 4, vec![b, 1, 0]),                          // 2: the anonymous struct
            t(0, PTR, 0, 5, vec![]),                                    // 3: struct other *
            t(outer, STRUCT, 3, 16, vec![a, 1, 0, 0, 2, 32, p, 3, 64]), // 4
            t(other, STRUCT, 1, 4, vec![a, 1, 0]),                      // 5
            t(unrelated, STRUCT, 1, 4, vec![a, 1, 0]),                  // 6
        ];
        encode(&types, &s.bytes)
    }

    #[test]
    fn a_kept_struct_keeps_its_anonymous_members_and_names_what_it_points_to() {
        let keep = HashSet::from(["outer".to_string()]);
        let trimmed = parse(&trim(&sample(), &keep, Members::All).unwrap()).unwrap();
        let kinds: Vec<(u32, &[u8])> = trimmed.types.iter().map(|t| (t.kind(), trimmed.name(t.name_off))).collect();
        assert_eq!(kinds, [(INT, &b"int"[..]), (STRUCT, b""), (PTR, b""), (STRUCT, b"outer"), (FWD, b"other")]);
        let outer = &trimmed.types[3];
        let members: Vec<(&[u8], u32, u32)> = outer.extra.chunks(3).map(|m| (trimmed.name(m[0]), m[1], m[2])).collect();
        assert_eq!(members, [(&b"a"[..], 1, 0), (b"", 2, 32), (b"p", 3, 64)], "member names, types and bit offsets survive");
        assert_eq!(trimmed.types[2].size_or_type, 5, "the pointer points to the forward declaration");
    }

    #[test]
    fn trimming_twice_changes_nothing_and_garbage_is_refused() {
        let keep = HashSet::from(["outer".to_string(), "other".to_string()]);
        for members in [Members::All, Members::Named] {
            let once = trim(&sample(), &keep, members).unwrap();
            assert_eq!(trim(&once, &keep, members).unwrap(), once);
            assert!(trim(b"not btf at all, not even a header", &keep, members).is_err());
        }
    }

    #[test]
    fn named_members_keeps_the_asked_fields_and_the_anonymous_ones_at_their_offsets() {
        let keep = HashSet::from(["outer".to_string(), "b".to_string(), "p".to_string()]);
        let trimmed = parse(&trim(&sample(), &keep, Members::Named).unwrap()).unwrap();
        let outer = trimmed.types.iter().find(|t| trimmed.name(t.name_off) == b"outer").unwrap();
        let members: Vec<(&[u8], u32)> = outer.extra.chunks(3).map(|m| (trimmed.name(m[0]), m[2])).collect();
        assert_eq!(members, [(&b""[..], 32), (b"p", 64)], "`a` is gone, the others keep their bit offsets");
        assert_eq!((outer.vlen(), outer.size_or_type), (2, 16), "vlen follows, the size stays");
        let inner = trimmed.types.iter().find(|t| t.kind() == STRUCT && t.name_off == 0).unwrap();
        assert_eq!(trimmed.name(inner.extra[0]), b"b", "the anonymous struct keeps its asked field");
    }
}
