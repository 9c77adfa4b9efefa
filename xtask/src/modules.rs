//! The test kernel module, built against each kernel's unpacked headers, plus the in-tree modules it
//! needs (e.g. videobuf2-common for get_vaddr_frames on >= 5.12), in the order insmod needs them;
//! and the Debian modules the in-tree scenarios (tests/vm/intree) use: vfio-pci, vfio's type1 IOMMU
//! driver, kvm_amd, vgem, and e1000 (loaded by the scenario program itself, as the driver's claim).

use crate::kernels::Kernel;
use crate::sh::{self, vm_sources_dir, vm_target_dir};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A module ready to be packed into the initramfs.
pub struct Module {
    pub name: String,
    pub file: PathBuf,
}

fn source_dir() -> PathBuf {
    vm_sources_dir().join("module")
}

/// Builds the test module for `kernel` in a copy under target/ and returns every module to load,
/// dependencies first.
pub fn prepare(kernel: &Kernel) -> Result<Vec<Module>> {
    let work = vm_target_dir().join(kernel.label);
    let built = build(kernel, &source_dir(), &work.join("module-build"))?;
    let index = in_tree_index(&kernel.modules_dir)?;
    let unpacked = work.join("modules");
    std::fs::create_dir_all(&unpacked)?;
    let mut ordered = Vec::new();
    for ko in built {
        let name = module_name(&ko);
        add_with_deps(&name, ko, &index, &unpacked, &mut ordered)?;
    }
    Ok(ordered)
}

/// Debian's modules for tests/vm/intree, each with what modinfo says it depends on.
pub struct InTree {
    /// Loaded by the guest's init at boot, dependencies first (vfio_pci_core exists from 6.1 on).
    pub boot: Vec<Module>,
    /// Only packed (as /modules/intree/<name>.ko): the scenario program loads them.
    pub late: Vec<Module>,
}

/// Loaded at boot: the guest binds QEMU's edu to vfio-pci and needs /dev/kvm; vgem's dumb buffers
/// are RAM behind a PFN map on 6.1+ (drm_gem_shmem).
const INTREE_BOOT: &[&str] = &["vfio_pci", "vfio_iommu_type1", "kvm_amd", "vgem"];
/// Loaded by the scenario program (their dependencies, if any, at boot).
const INTREE_LATE: &[&str] = &["e1000"];
/// The NIC of the `metrics` scenarios' user network (xtask/src/prometheus.rs); loaded at boot,
/// idle when QEMU has no virtio NIC (virtio_pci is built in from 6.12).
const NET_BOOT: &[&str] = &["virtio_pci", "virtio_net"];

/// The in-tree modules of `kernel` for tests/vm/intree. A module built into the kernel
/// (modules.builtin) is skipped.
pub fn in_tree(kernel: &Kernel) -> Result<InTree> {
    let (index, builtin, unpacked) = kernel_modules(kernel)?;
    let mut boot = Vec::new();
    let mut late = Vec::new();
    for (names, late_too) in [(INTREE_BOOT, false), (NET_BOOT, false), (INTREE_LATE, true)] {
        for name in names.iter().copied() {
            if builtin.iter().any(|b| b == name) {
                continue;
            }
            let file = index.get(name).with_context(|| format!("{name} is not in {}", kernel.modules_dir.display()))?;
            let mut ordered = Vec::new();
            add_with_deps(name, file.clone(), &index, &unpacked, &mut ordered)?;
            if late_too {
                late.extend(ordered.pop());
            }
            for module in ordered {
                if !boot.iter().any(|m: &Module| m.name == module.name) {
                    boot.push(module);
                }
            }
        }
    }
    Ok(InTree { boot, late })
}

/// `names` (Debian's modules of `kernel`) and what they depend on, dependencies first; a module
/// built into the kernel (modules.builtin) is skipped.
pub fn with_deps(kernel: &Kernel, names: &[&str]) -> Result<Vec<Module>> {
    let (index, builtin, unpacked) = kernel_modules(kernel)?;
    let mut ordered = Vec::new();
    for name in names.iter().copied().filter(|n| !builtin.iter().any(|b| b == n)) {
        let file = index.get(name).with_context(|| format!("{name} is not in {}", kernel.modules_dir.display()))?;
        add_with_deps(name, file.clone(), &index, &unpacked, &mut ordered)?;
    }
    Ok(ordered)
}

/// The kernel's modules by name, the names of those built in, and where decompressed copies go.
fn kernel_modules(kernel: &Kernel) -> Result<(BTreeMap<String, PathBuf>, Vec<String>, PathBuf)> {
    let index = in_tree_index(&kernel.modules_dir)?;
    let builtin = std::fs::read_to_string(kernel.modules_dir.join("modules.builtin")).unwrap_or_default();
    let builtin: Vec<String> = builtin.lines().map(|l| module_name(Path::new(l))).collect();
    let unpacked = vm_target_dir().join(kernel.label).join("modules");
    std::fs::create_dir_all(&unpacked)?;
    Ok((index, builtin, unpacked))
}

const GCC12_LACKS: &[&str] = &[
    "CONFIG_CC_HAS_MIN_FUNCTION_ALIGNMENT",
    "CONFIG_CC_HAS_COUNTED_BY",
    "CONFIG_CC_HAS_COUNTED_BY_PTR",
    "CONFIG_CC_HAS_MULTIDIMENSIONAL_NONSTRING",
];

fn build(kernel: &Kernel, source: &Path, copy: &Path) -> Result<Vec<PathBuf>> {
    if !source.join("Kbuild").exists() && !source.join("Makefile").exists() {
        bail!("{} has no Kbuild or Makefile: the test module is missing", source.display());
    }
    sync_copy(source, copy)?;
    sh::run(
        Command::new("make")
            .arg("-C")
            .arg(&kernel.headers)
            .arg(format!("M={}", copy.display()))
            // The headers come from Debian's build, not this host: only the compiler is ours. 5.10 was
            // built with gcc-10; gcc-12 only warns about the mismatch.
            .args(["CC=gcc-12", "HOSTCC=gcc-12", "-j2", "modules"])
            // Module BTF needs a pahole matching Debian's; the test module does not need BTF.
            .arg("CONFIG_DEBUG_INFO_BTF_MODULES=")
            // Kernels built with a newer gcc (forky's 7.x: gcc-16) enable flags gcc-12 lacks; the
            // test module does without them (kernels that do not set them are not affected).
            .args(GCC12_LACKS.iter().map(|c| format!("{c}="))),
    )
    .with_context(|| format!("building the test module for {}", kernel.release))?;
    let mut kos: Vec<PathBuf> =
        std::fs::read_dir(copy)?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e == "ko")).collect();
    kos.sort();
    if kos.is_empty() {
        bail!("make produced no .ko in {}", copy.display());
    }
    Ok(kos)
}

/// Copies only files whose content changed, so make's timestamps stay meaningful across runs.
fn sync_copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            sync_copy(&src, &dst)?;
        } else if std::fs::read(&dst).ok() != Some(std::fs::read(&src)?) {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// Module name as the kernel knows it: file stem without .ko[.xz|.zst], dashes as underscores.
fn module_name(path: &Path) -> String {
    let file = path.file_name().unwrap_or_default().to_string_lossy();
    let stem = file.split(".ko").next().unwrap_or(&file);
    stem.replace('-', "_")
}

fn in_tree_index(modules_dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    fn walk(dir: &Path, index: &mut BTreeMap<String, PathBuf>) -> Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(&path, index)?;
            } else if path.to_string_lossy().contains(".ko") {
                index.insert(module_name(&path), path);
            }
        }
        Ok(())
    }
    let mut index = BTreeMap::new();
    walk(&modules_dir.join("kernel"), &mut index)?;
    Ok(index)
}

/// Depth-first: dependencies are pushed before the module that needs them.
fn add_with_deps(name: &str, file: PathBuf, index: &BTreeMap<String, PathBuf>, unpacked: &Path, ordered: &mut Vec<Module>) -> Result<()> {
    if ordered.iter().any(|m| m.name == name) {
        return Ok(());
    }
    let file = decompressed(&file, unpacked)?;
    let depends = sh::output(Command::new("modinfo").args(["-F", "depends"]).arg(&file))?;
    for dep in depends.trim().split(',').filter(|d| !d.is_empty()) {
        let dep = dep.replace('-', "_");
        let dep_file = index.get(&dep).with_context(|| format!("{name} needs module {dep}, not in the kernel package"))?;
        add_with_deps(&dep, dep_file.clone(), index, unpacked, ordered)?;
    }
    ordered.push(Module { name: name.to_owned(), file });
    Ok(())
}

/// Debian compresses modules (.ko.xz on some releases, .ko.zst on others); busybox insmod wants .ko.
fn decompressed(file: &Path, unpacked: &Path) -> Result<PathBuf> {
    let name = file.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let tool = if name.ends_with(".ko.xz") {
        "xz"
    } else if name.ends_with(".ko.zst") {
        "zstd"
    } else {
        return Ok(file.to_path_buf());
    };
    let out = unpacked.join(format!("{}.ko", module_name(file)));
    if !out.exists() {
        let bytes = Command::new(tool).args(["-dc"]).arg(file).output()?;
        if !bytes.status.success() {
            bail!("{tool} -dc {} failed", file.display());
        }
        std::fs::write(&out, bytes.stdout)?;
    }
    Ok(out)
}
