//! The built-in holder catalog: in-tree kernel code whose raw lookups have known semantics (vfio's
//! per-range release, KVM's MMU notifier, the kernel's own bookkeeping lookups). The data is
//! `catalog.toml`, in the user policy's format and read by its parser; [`Policy::load`] layers it
//! under the user's policy.
use crate::policy::Policy;

/// The name the catalog's rules give as their source.
pub const FILE: &str = "catalog.toml";

const TEXT: &str = include_str!("catalog.toml");

/// The catalog as a policy (holders and suppressions; its `[gate]` is never used).
pub fn catalog() -> Policy {
    Policy::parse(TEXT, FILE).expect("the built-in catalog parses (tested)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        policy::{ArgMeaning, RamPfns, ReleaseMatch},
        vocab::finding::FindingKind,
    };

    #[test]
    fn the_catalog_parses_and_knows_vfio_kvm_and_the_kernel_internal_callers() {
        let c = catalog();
        let (_, vfio) = c.holder_for(Some("vaddr_get_pfns.constprop.0"), Some("vfio_iommu_type1")).unwrap();
        assert_eq!(vfio.release, ["vfio_unpin_pages_remote"]);
        assert_eq!(vfio.release_match, ReleaseMatch::Arg { index: 2, is: ArgMeaning::Pfn, count: Some(3) });
        assert_eq!(vfio.ram_pfns, RamPfns::Refused);
        assert_eq!(vfio.source, FILE);
        assert!(c.suppression_for(Some("hva_to_pfn_remapped"), Some("kvm"), FindingKind::LookupRevoked).is_some());
        assert!(c.holder_for(Some("get_pat_info"), None).is_some_and(|(_, h)| h.kernel_internal));
    }
}
