//! Source lines of module code: `func+off [module]` → `file:line`, from the DWARF line table of the
//! module's `.ko` when one with debug info is found; `None` otherwise (the frame keeps only its
//! kallsyms name; SARIF then has a logical location only).
//!
//! A `.ko` is a relocatable ELF object (`ET_REL`): every section starts at address 0 and its DWARF
//! addresses are relocations against section symbols (`.rela.debug_line`, `.rela.debug_info`…).
//! The relocations are applied while reading (gimli's `RelocateReader`), each allocated section
//! placed at its own base (`section index << 32`), so `.text`, `.init.text` and `.text.unlikely`
//! do not overlap; a function `f` of section `s` at `st_value` is then at `base(s) + st_value`.
//! (blazesym maps a module address onto the `.ko` from the module's load address instead, which
//! holds for `.text` only and needs a vmlinux beside it; gimli, addr2line and object are the
//! crates it and std's backtraces are built on.)
//!
//! Where the `.ko` comes from, first found wins: `--module-debug-dir` directories (searched for
//! `<module>.ko`, `-` and `_` alike), Debian's debug packages
//! (`/usr/lib/debug/lib/modules/<release>/`), then `/lib/modules/<release>/modules.dep`
//! (uncompressed `.ko` only: Debian's own are compressed and stripped). A file whose GNU build id
//! differs from the loaded module's (`/sys/module/<module>/notes/.note.gnu.build-id`) is another
//! build and is skipped.
use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::Arc,
};

use object::{Object, ObjectSection, ObjectSymbol, RelocationKind, RelocationTarget, SectionFlags, SectionIndex, SymbolSection};

type Reader = gimli::RelocateReader<gimli::EndianArcSlice<gimli::RunTimeEndian>, Relocations>;

/// Where a module's `.ko` files may be, and the line tables read so far (one per module, read at
/// its first frame; forgotten when modules change, since a reloaded module may be another build).
#[derive(Default)]
pub struct ModuleDebugInfo {
    /// `--module-debug-dir` first, then the distribution's places.
    dirs: Vec<PathBuf>,
    /// `/lib/modules/<release>`, for modules.dep.
    modules_dir: Option<PathBuf>,
    /// `/sys/module`, for build ids (a fixture directory in tests).
    sys_module: PathBuf,
    /// `<module>.ko` (dashes as underscores) → path, per directory, built on first use.
    indexes: HashMap<PathBuf, HashMap<String, PathBuf>>,
    /// Per module: its line table, or `None` when no matching `.ko` with debug info was found.
    modules: HashMap<String, Option<Arc<ModuleLines>>>,
}

impl ModuleDebugInfo {
    /// For the running kernel `release`, searching `extra_dirs` first.
    pub fn new(extra_dirs: Vec<PathBuf>, release: &str) -> Self {
        let mut dirs = extra_dirs;
        dirs.push(PathBuf::from(format!("/usr/lib/debug/lib/modules/{release}")));
        Self::with_roots(dirs, Some(PathBuf::from(format!("/lib/modules/{release}"))), PathBuf::from("/sys/module"))
    }

    /// Everything under given directories (tests).
    pub fn with_roots(dirs: Vec<PathBuf>, modules_dir: Option<PathBuf>, sys_module: PathBuf) -> Self {
        Self { dirs, modules_dir, sys_module, ..Self::default() }
    }

    /// `file:line` of `function+offset` in `module` (`offset` as kallsyms gives it: for a return
    /// address, subtract one to get the call's line).
    pub fn locate(&mut self, module: &str, function: &str, offset: u64) -> Option<(String, u32)> {
        let module = module.replace('-', "_");
        if !self.modules.contains_key(&module) {
            let lines = self.load(&module).map(Arc::new);
            self.modules.insert(module.clone(), lines);
        }
        self.modules.get(&module)?.as_ref()?.locate(function, offset)
    }

    /// Modules were loaded, unloaded or reloaded: read their files again when next needed.
    pub(crate) fn forget_modules(&mut self) {
        self.modules.clear();
    }

    fn load(&mut self, module: &str) -> Option<ModuleLines> {
        let loaded_id = std::fs::read(self.sys_module.join(module).join("notes/.note.gnu.build-id")).ok().and_then(|n| note_desc(&n));
        for path in self.candidates(module) {
            let Ok(bytes) = std::fs::read(&path) else { continue };
            match ModuleLines::parse(&bytes, loaded_id.as_deref()) {
                Ok(lines) => {
                    log::debug!("source lines of module {module} from {}", path.display());
                    return Some(lines);
                }
                Err(why) => log::debug!("{}: {why}", path.display()),
            }
        }
        None
    }

    fn candidates(&mut self, module: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for dir in self.dirs.clone() {
            let index = self.indexes.entry(dir.clone()).or_insert_with(|| index_dir(&dir));
            out.extend(index.get(module).cloned());
        }
        if let Some(dir) = &self.modules_dir {
            let dep = std::fs::read_to_string(dir.join("modules.dep")).unwrap_or_default();
            for line in dep.lines() {
                let Some((path, _)) = line.split_once(':') else { continue };
                let path = Path::new(path.trim());
                if path.extension().is_some_and(|e| e == "ko") && module_name(path).as_deref() == Some(module) {
                    out.push(dir.join(path));
                }
            }
        }
        out
    }
}

/// `<name>.ko` files under `dir`, by module name.
fn index_dir(dir: &Path) -> HashMap<String, PathBuf> {
    fn walk(dir: &Path, depth: u32, out: &mut HashMap<String, PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() && depth < 8 => walk(&path, depth + 1, out),
                Ok(t) if t.is_file() || t.is_symlink() => {
                    if let Some(name) = module_name(&path).filter(|_| path.extension().is_some_and(|e| e == "ko")) {
                        out.entry(name).or_insert(path);
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = HashMap::new();
    walk(dir, 0, &mut out);
    out
}

/// `vfio-pci.ko` → `vfio_pci`: the name the kernel gives a module file.
fn module_name(path: &Path) -> Option<String> {
    Some(path.file_stem()?.to_str()?.replace('-', "_"))
}

/// The descriptor of the first ELF note in `note` (a GNU build id in `/sys/module/*/notes`).
fn note_desc(note: &[u8]) -> Option<Vec<u8>> {
    let word = |at: usize| Some(u32::from_ne_bytes(note.get(at..at + 4)?.try_into().ok()?) as usize);
    let (name_size, desc_size) = (word(0)?, word(4)?);
    let desc_at = 12 + name_size.div_ceil(4) * 4;
    note.get(desc_at..desc_at + desc_size).map(<[u8]>::to_vec)
}

/// The line table of one `.ko`, with its function symbols.
pub struct ModuleLines {
    context: addr2line::Context<Reader>,
    /// Function name → its address in the relocated DWARF (`base(section) + st_value`).
    functions: HashMap<String, u64>,
}

impl ModuleLines {
    /// Reads a relocatable object's DWARF. Errors (one line): not an ELF relocatable object, no
    /// `.debug_line`, another build than `build_id`, DWARF that does not parse.
    pub fn parse(bytes: &[u8], build_id: Option<&[u8]>) -> Result<Self, String> {
        let file = object::File::parse(bytes).map_err(|e| format!("not an object file: {e}"))?;
        if file.kind() != object::ObjectKind::Relocatable {
            return Err("not a relocatable object (.ko)".into());
        }
        if file.section_by_name(".debug_line").is_none() {
            return Err("no debug info (.debug_line)".into());
        }
        if let (Some(loaded), Ok(Some(own))) = (build_id, file.build_id())
            && loaded != own
        {
            return Err("another build than the loaded module (build id differs)".into());
        }
        let endian = if file.is_little_endian() { gimli::RunTimeEndian::Little } else { gimli::RunTimeEndian::Big };
        let load = |id: gimli::SectionId| -> Result<Reader, String> {
            let Some(section) = file.section_by_name(id.name()) else {
                return Ok(gimli::RelocateReader::new(gimli::EndianArcSlice::new(Arc::from(&[][..]), endian), Relocations::default()));
            };
            let data = section.uncompressed_data().map_err(|e| format!("{}: {e}", id.name()))?;
            let relocations = Relocations::of(&file, &section)?;
            Ok(gimli::RelocateReader::new(gimli::EndianArcSlice::new(Arc::from(&*data), endian), relocations))
        };
        let dwarf = gimli::Dwarf::load(load)?;
        let context = addr2line::Context::from_dwarf(dwarf).map_err(|e| format!("DWARF: {e}"))?;
        let functions = file
            .symbols()
            .filter(|s| s.kind() == object::SymbolKind::Text)
            .filter_map(|s| {
                let SymbolSection::Section(index) = s.section() else { return None };
                Some((s.name().ok()?.to_string(), section_base(index) + s.address()))
            })
            .collect();
        Ok(Self { context, functions })
    }

    /// `file:line` of `function+offset`: the innermost inlined function's line, where the
    /// instruction came from.
    pub fn locate(&self, function: &str, offset: u64) -> Option<(String, u32)> {
        let address = self.functions.get(function)? + offset;
        let location = self.context.find_location(address).ok()??;
        Some((location.file?.to_string(), location.line?))
    }
}

/// Where an allocated section of a relocatable object is placed: apart from every other.
fn section_base(index: SectionIndex) -> u64 {
    (index.0 as u64) << 32
}

/// The relocations of one DWARF section: offset in the section → the value to read there.
#[derive(Clone, Debug, Default)]
struct Relocations(Arc<BTreeMap<usize, Relocated>>);

#[derive(Clone, Copy, Debug)]
struct Relocated {
    value: u64,
    /// REL (the addend is what the section holds) rather than RELA.
    implicit_addend: bool,
}

impl Relocations {
    fn of(file: &object::File, section: &object::Section) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for (offset, relocation) in section.relocations() {
            // DWARF uses absolute relocations only (addresses, and offsets into other sections).
            if relocation.kind() != RelocationKind::Absolute {
                continue;
            }
            let target = match relocation.target() {
                RelocationTarget::Symbol(index) => {
                    let symbol = file.symbol_by_index(index).map_err(|e| format!("relocation symbol: {e}"))?;
                    match symbol.section() {
                        SymbolSection::Section(s) if is_allocated(file, s) => section_base(s) + symbol.address(),
                        _ => symbol.address(),
                    }
                }
                RelocationTarget::Section(s) if is_allocated(file, s) => section_base(s),
                _ => 0,
            };
            let value = target.wrapping_add(relocation.addend() as u64);
            let Ok(offset) = usize::try_from(offset) else { continue };
            map.insert(offset, Relocated { value, implicit_addend: relocation.has_implicit_addend() });
        }
        Ok(Self(Arc::new(map)))
    }
}

/// Code or data the module loader places in memory (`SHF_ALLOC`), unlike `.debug_*` sections,
/// whose offsets DWARF refers to as they are.
fn is_allocated(file: &object::File, index: SectionIndex) -> bool {
    file.section_by_index(index)
        .is_ok_and(|s| matches!(s.flags(), SectionFlags::Elf { sh_flags } if sh_flags & u64::from(object::elf::SHF_ALLOC) != 0))
}

impl gimli::Relocate for Relocations {
    fn relocate_address(&self, offset: usize, value: u64) -> gimli::Result<u64> {
        Ok(match self.0.get(&offset) {
            Some(r) if r.implicit_addend => r.value.wrapping_add(value),
            Some(r) => r.value,
            None => value,
        })
    }

    fn relocate_offset(&self, offset: usize, value: usize) -> gimli::Result<usize> {
        let relocated = self.relocate_address(offset, value as u64)?;
        usize::try_from(relocated).map_err(|_| gimli::Error::OffsetOutOfBounds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_id_note_gives_its_descriptor() {
        // namesz 4, descsz 3, type 3 (NT_GNU_BUILD_ID), "GNU\0", desc, padding
        let mut note = Vec::new();
        for word in [4u32, 3, 3] {
            note.extend(word.to_ne_bytes());
        }
        note.extend(b"GNU\0\xaa\xbb\xcc\0");
        assert_eq!(note_desc(&note), Some(vec![0xaa, 0xbb, 0xcc]));
        assert_eq!(note_desc(&note[..10]), None);
    }

    #[test]
    fn module_files_are_named_as_the_kernel_names_modules() {
        assert_eq!(module_name(Path::new("kernel/drivers/vfio/pci/vfio-pci.ko")).as_deref(), Some("vfio_pci"));
    }
}
