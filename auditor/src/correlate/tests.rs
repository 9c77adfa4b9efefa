use super::{synthetic::*, *};
use crate::{
    policy::Policy,
    vocab::finding::{self, Severity},
};

const HOLDER: &str = "pfnaudit_pin_tracked";
const MODULE: &str = "pfnaudit_test";
const RELEASE: &str = "pfnaudit_unpin_tracked";

fn policy() -> Policy {
    Policy::parse(&format!("[[holder]]\nmodule = \"{MODULE}\"\nfunction = \"{HOLDER}\"\nrelease = [\"{RELEASE}\"]\n"), "test.toml").unwrap()
}

/// The test holder, without a module, released by RELEASE, with these more holder keys.
fn policy_with(keys: &str) -> Policy {
    Policy::parse(&format!("[[holder]]\nfunction = \"{HOLDER}\"\nrelease = [\"{RELEASE}\"]\n{keys}"), "t.toml").unwrap()
}

fn run(policy: &Policy, s: &Stream) -> (Vec<Finding>, Summary) {
    let mut c = Correlator::new(policy);
    let live: Vec<Finding> = s.events.iter().flat_map(|e| c.handle(e)).collect();
    (live, c.finish())
}

fn kinds(findings: &[Finding]) -> Vec<&'static str> {
    findings.iter().map(|f| f.kind.name()).collect()
}

#[test]
fn raw_pin_of_released_holder_outlives_owner_revoke_is_error() {
    let p = Proc::new(100);
    let mut s = Stream::default();
    s.pfn_map(&p).lookups(&p, HOLDER, MODULE, 0..4).owner_revoke(&p, 0, None).release(&p, RELEASE, 0).vma_revoke(&p, Cause::Unmap, 0..4);
    let (live, summary) = run(&policy(), &s);
    assert_eq!(kinds(&live), ["pin-outlived-revocation"]);
    let f = &live[0];
    assert_eq!(f.severity, Severity::Error);
    assert_eq!(f.pin.pages, 4, "four per-page lookups are one pin");
    assert_eq!(f.pin.pfns, vec![finding::PfnRange { first: p.first_pfn, count: 4 }]);
    assert_eq!(f.pin.holder.function.as_deref(), Some(HOLDER));
    assert_eq!(f.pin.vma.as_ref().unwrap().path.as_deref(), Some(DEVICE_PATH));
    let r = f.revocation.as_ref().unwrap();
    assert_eq!((r.cause, r.hook.name()), (Cause::OwnerRevoke, "unmap_mapping_range"));
    assert_eq!(f.age_ns, r.ts_ns - f.pin.ts_ns);
    assert!(f.age_ns > 0);
    assert_eq!(summary.findings, live, "released before munmap and end: nothing more");
    assert_eq!(summary.pins_held, 0);
}

#[test]
fn per_page_lookups_coalesce_into_one_pin_even_out_of_order() {
    let p = Proc::new(7);
    let mut s = Stream::default();
    s.pfn_map(&p).lookups(&p, HOLDER, MODULE, 2..4).lookups(&p, HOLDER, MODULE, 1..2).lookups(&p, HOLDER, MODULE, 2..3);
    let mut c = Correlator::new(&policy());
    for e in &s.events {
        c.handle(e);
    }
    assert_eq!(c.pins_held(), 1);
    let summary = c.finish();
    assert_eq!(kinds(&summary.findings), ["pin-leaked"]);
    assert_eq!(summary.findings[0].pin.pages, 3);
}

#[test]
fn revocation_outside_the_pinned_pages_is_not_a_finding() {
    let p = Proc::new(8);
    let mut s = Stream::default();
    s.pfn_map(&p).lookups(&p, HOLDER, MODULE, 0..2).owner_revoke(&p, 2, Some(2)).vma_revoke(&p, Cause::Zap, 3..4).release(&p, RELEASE, 0);
    let (live, summary) = run(&policy(), &s);
    assert!(live.is_empty(), "{live:?}");
    assert!(summary.findings.is_empty());
}

#[test]
fn zap_covering_a_held_pin_is_a_revocation_and_munmap_an_unmap() {
    let p = Proc::new(9);
    let mut zap = Stream::default();
    zap.pfn_map(&p).lookups(&p, HOLDER, MODULE, 0..1).vma_revoke(&p, Cause::Zap, 0..4).release(&p, RELEASE, 0);
    assert_eq!(kinds(&run(&policy(), &zap).0), ["pin-outlived-revocation"]);
    let mut unmap = Stream::default();
    unmap.pfn_map(&p).lookups(&p, HOLDER, MODULE, 0..1).vma_revoke(&p, Cause::Unmap, 0..4).release(&p, RELEASE, 0);
    assert_eq!(kinds(&run(&policy(), &unmap).0), ["pin-outlived-unmap"]);
}

#[test]
fn lookup_without_declared_release_revoked_while_alive_is_a_warning() {
    let p = Proc::new(10);
    let mut s = Stream::default();
    s.pfn_map(&p).lookups(&p, "other_lookup", MODULE, 0..2).owner_revoke(&p, 0, None).exit(&p);
    let (live, summary) = run(&policy(), &s);
    assert_eq!(kinds(&live), ["lookup-revoked"]);
    assert_eq!(live[0].severity, Severity::Warning);
    assert!(summary.findings.iter().all(|f| f.kind != FindingKind::PinLeaked), "no release declared: exit ends it");
    assert_eq!(summary.pins_held, 0);
}

#[test]
fn pin_still_held_at_exit_then_released_by_file_close() {
    let p = Proc::new(11);
    let mut s = Stream::default();
    s.pfn_map(&p).lookups(&p, HOLDER, MODULE, 0..4).exit(&p).release(&p, RELEASE, 0);
    let (live, summary) = run(&policy(), &s);
    assert_eq!(kinds(&live), ["pin-outlived-exit"]);
    assert_eq!(summary.pins_held, 0);
}

#[test]
fn pin_never_released_is_leaked_at_the_end() {
    let p = Proc::new(12);
    let mut s = Stream::default();
    s.pfn_map(&p).lookups(&p, HOLDER, MODULE, 0..1);
    let (live, summary) = run(&policy(), &s);
    assert!(live.is_empty());
    assert_eq!(kinds(&summary.findings), ["pin-leaked"]);
}

#[test]
fn frame_vector_of_pfns_warns_and_its_put_releases_it() {
    let p = Proc::new(13);
    let mut s = Stream::default();
    s.pfn_map(&p).frames_get(&p, 0xffff_8880_5555_0000, true, 2).frames_put(&p, 0xffff_8880_5555_0000).vma_revoke(&p, Cause::Unmap, 0..4);
    let (live, summary) = run(&Policy::default(), &s);
    assert_eq!(kinds(&live), ["pfnmap-frame-vector"]);
    assert_eq!(live[0].pin.vma.as_ref().unwrap().path.as_deref(), Some(DEVICE_PATH), "path found through the PFN map");
    assert_eq!(summary.pins_held, 0);
}

#[test]
fn frame_vector_pin_still_held_at_munmap_is_an_error() {
    let p = Proc::new(14);
    let mut s = Stream::default();
    s.frames_get(&p, 0xffff_8880_6666_0000, false, 4).vma_revoke(&p, Cause::Unmap, 0..4).frames_put(&p, 0xffff_8880_6666_0000);
    let (live, summary) = run(&Policy::default(), &s);
    assert_eq!(kinds(&live), ["pin-outlived-unmap"]);
    assert_eq!(live[0].pin.source, PinSource::FrameVector);
    assert!(
        live[0].message.contains(&format!("4 page(s) of user memory at {:#x} after the user unmapped it", p.start)),
        "{}",
        live[0].message
    );
    assert_eq!(summary.pins_held, 0);
}

#[test]
fn correct_use_gives_no_findings() {
    let p = Proc::new(15);
    let mut s = Stream::default();
    s.pfn_map(&p)
        .lookups(&p, HOLDER, MODULE, 0..4)
        .release(&p, RELEASE, 0)
        .owner_revoke(&p, 0, None)
        .frames_get(&p, 0xffff_8880_7777_0000, false, 1)
        .frames_put(&p, 0xffff_8880_7777_0000)
        .vma_revoke(&p, Cause::Unmap, 0..4)
        .exit(&p);
    let (live, summary) = run(&policy(), &s);
    assert!(live.is_empty() && summary.findings.is_empty(), "{:?}", kinds(&summary.findings));
}

#[test]
fn release_of_another_process_does_not_release_by_tgid() {
    let (a, b) = (Proc::new(16), Proc::new(17));
    let mut s = Stream::default();
    s.pfn_map(&a).lookups(&a, HOLDER, MODULE, 0..1).release(&b, RELEASE, 0).owner_revoke(&a, 0, None);
    assert_eq!(kinds(&run(&policy(), &s).0), ["pin-outlived-revocation"]);
}

#[test]
fn release_matched_by_pfn_argument_releases_only_that_pin() {
    let policy = policy_with("release_match = \"arg0\"\nrelease_arg_is = \"pfn\"\n");
    let (a, b) = (Proc::new(18), Proc::new(19));
    let mut s = Stream::default();
    s.pfn_map(&a).pfn_map(&b).lookups(&a, HOLDER, MODULE, 0..1).lookups(&b, HOLDER, MODULE, 0..1).release(&b, RELEASE, a.first_pfn);
    let (_, summary) = run(&policy, &s);
    assert_eq!(kinds(&summary.findings), ["pin-leaked"]);
    assert_eq!(summary.findings[0].pin.task.tgid, b.tgid);
}

#[test]
fn suppressed_findings_are_counted_not_reported() {
    let policy =
        Policy::parse(&format!("[[suppress]]\nholder = \"{MODULE}\"\nkind = \"lookup-revoked\"\nreason = \"test\"\n"), "t.toml").unwrap();
    let p = Proc::new(20);
    let mut s = Stream::default();
    s.pfn_map(&p).lookups(&p, HOLDER, MODULE, 0..1).owner_revoke(&p, 0, None);
    let (live, summary) = run(&policy, &s);
    assert!(live.is_empty());
    assert_eq!(summary.suppressed, 1);
}

#[test]
fn kernel_internal_lookups_are_not_pins() {
    let with_catalog = policy().over(&crate::policy::Policy::catalog()).unwrap();
    let without = Policy::default();
    // The probe table's kernel-internal functions and the auditor's own nested hooks are never
    // pins, catalog or not; get_pat_info (not hooked) is kernel-internal by the catalog.
    let cases = [("follow_phys", false), ("untrack_pfn", false), ("track_pfn_copy.isra.0", false), ("generic_access_phys", false)];
    let cases = cases.into_iter().chain([("follow_pte", false), ("get_pat_info", true)]);
    for (caller, catalog) in cases {
        let p = Proc::new(21);
        let mut s = Stream::default();
        s.pfn_map(&p).lookups(&p, caller, "", 0..1).owner_revoke(&p, 0, None);
        let (live, summary) = run(if catalog { &with_catalog } else { &without }, &s);
        assert!(live.is_empty() && summary.findings.is_empty() && summary.pins_held == 0, "{caller}");
    }
}

#[test]
fn unrelated_truncates_never_touch_pins() {
    let p = Proc::new(22);
    let mut s = Stream::default();
    s.pfn_map(&p).lookups(&p, HOLDER, MODULE, 0..1);
    for _ in 0..100 {
        s.unrelated_truncate(&p);
    }
    s.release(&p, RELEASE, 0);
    let (live, summary) = run(&policy(), &s);
    assert!(live.is_empty() && summary.findings.is_empty());
}

#[test]
fn a_pin_is_reported_once_per_kind() {
    let p = Proc::new(23);
    let mut s = Stream::default();
    s.pfn_map(&p).lookups(&p, HOLDER, MODULE, 0..1).owner_revoke(&p, 0, None).vma_revoke(&p, Cause::Zap, 0..1).vma_revoke(
        &p,
        Cause::Unmap,
        0..1,
    );
    let (live, summary) = run(&policy(), &s);
    assert_eq!(kinds(&live), ["pin-outlived-revocation", "pin-outlived-unmap"]);
    assert_eq!(kinds(&summary.findings), ["pin-outlived-revocation", "pin-outlived-unmap", "pin-leaked"]);
    assert_eq!(summary.counts.get("pin-leaked"), Some(&1));
}

// ---- exact release accounting -------------------------------------------------------------

/// A holder released by `RELEASE(pfn = arg0, npage = arg1)`, like vfio's vfio_unpin_pages_remote.
fn counted_policy() -> Policy {
    policy_with("release_match = \"arg0\"\nrelease_arg_is = \"pfn\"\nrelease_count = \"arg1\"\n")
}

#[test]
fn a_release_in_the_middle_of_a_pin_splits_it_and_the_rest_stays_held() {
    let p = Proc::new(40);
    let mut s = Stream::default();
    s.pfn_map(&p).lookups(&p, HOLDER, MODULE, 0..4).release_args(&p, RELEASE, [p.first_pfn + 1, 2, 0, 0, 0, 0]).owner_revoke(&p, 0, None);
    let (live, summary) = run(&counted_policy(), &s);
    assert_eq!(kinds(&live), ["pin-outlived-revocation"]);
    let pin = &live[0].pin;
    assert_eq!(pin.pages, 2, "pages 1 and 2 were given back");
    assert_eq!(pin.pfns, vec![finding::PfnRange { first: p.first_pfn, count: 1 }, finding::PfnRange { first: p.first_pfn + 3, count: 1 }]);
    assert_eq!((pin.start.0, pin.end.0), (p.start, p.start + 4 * 4096));
    assert!(live[0].message.contains("kept 2 page(s)"), "{}", live[0].message);
    assert_eq!(summary.pins_held, 1);
}

#[test]
fn a_revocation_of_only_released_pages_is_not_a_finding() {
    let p = Proc::new(41);
    let mut s = Stream::default();
    s.pfn_map(&p).lookups(&p, HOLDER, MODULE, 0..4).release_args(&p, RELEASE, [p.first_pfn + 1, 2, 0, 0, 0, 0]).vma_revoke(
        &p,
        Cause::Zap,
        1..3,
    );
    let (live, _) = run(&counted_policy(), &s);
    assert!(live.is_empty(), "{:?}", kinds(&live));
}

#[test]
fn two_releases_of_two_runs_end_the_pin() {
    let p = Proc::new(42);
    let mut s = Stream::default();
    s.pfn_map(&p)
        .lookups(&p, HOLDER, MODULE, 0..4)
        .release_args(&p, RELEASE, [p.first_pfn + 2, 2, 0, 0, 0, 0])
        .release_args(&p, RELEASE, [p.first_pfn, 2, 0, 0, 0, 0])
        .owner_revoke(&p, 0, None);
    let (live, summary) = run(&counted_policy(), &s);
    assert!(live.is_empty() && summary.findings.is_empty(), "{:?}", kinds(&summary.findings));
    assert_eq!(summary.pins_held, 0);
}

#[test]
fn a_release_without_a_count_gives_back_one_page() {
    let policy = policy_with("release_match = \"arg0\"\nrelease_arg_is = \"pfn\"\n");
    let p = Proc::new(43);
    let mut s = Stream::default();
    s.pfn_map(&p).lookups(&p, HOLDER, MODULE, 0..2).release(&p, RELEASE, p.first_pfn + 1).owner_revoke(&p, 0, None);
    let (live, _) = run(&policy, &s);
    assert_eq!(kinds(&live), ["pin-outlived-revocation"]);
    assert_eq!(live[0].pin.pfns, vec![finding::PfnRange { first: p.first_pfn, count: 1 }]);
}

#[test]
fn a_release_by_address_counts_pages_from_the_page_of_the_address() {
    let policy = policy_with("release_match = \"arg1\"\nrelease_arg_is = \"address\"\nrelease_count = \"arg2\"\n");
    let p = Proc::new(44);
    let mut s = Stream::default();
    s.pfn_map(&p).lookups(&p, HOLDER, MODULE, 0..4).release_args(&p, RELEASE, [0, p.start + 0x10, 3, 0, 0, 0]).owner_revoke(&p, 0, None);
    let (live, _) = run(&policy, &s);
    assert_eq!(kinds(&live), ["pin-outlived-revocation"]);
    assert_eq!(live[0].pin.pfns, vec![finding::PfnRange { first: p.first_pfn + 3, count: 1 }]);
}

#[test]
fn two_pins_of_one_pfn_a_release_of_one_page_ends_the_oldest_only() {
    let a = Proc::new(45);
    let b = Proc { first_pfn: a.first_pfn, ..Proc::new(46) };
    let mut s = Stream::default();
    s.pfn_map(&a).pfn_map(&b).lookups(&a, HOLDER, MODULE, 0..1).lookups(&b, HOLDER, MODULE, 0..1).release_args(
        &b,
        RELEASE,
        [a.first_pfn, 1, 0, 0, 0, 0],
    );
    let (_, summary) = run(&counted_policy(), &s);
    assert_eq!(kinds(&summary.findings), ["pin-leaked"]);
    assert_eq!(summary.findings[0].pin.task.tgid, b.tgid, "the older pin (a's) was given back");
}

#[test]
fn a_page_looked_up_again_after_its_release_joins_the_pin_again() {
    let p = Proc::new(47);
    let mut s = Stream::default();
    s.pfn_map(&p).lookups(&p, HOLDER, MODULE, 0..3).release_args(&p, RELEASE, [p.first_pfn + 1, 1, 0, 0, 0, 0]).lookups(
        &p,
        HOLDER,
        MODULE,
        1..2,
    );
    let mut c = Correlator::new(&counted_policy());
    for e in &s.events {
        c.handle(e);
    }
    assert_eq!(c.pins_held(), 1);
    let summary = c.finish();
    assert_eq!(summary.findings[0].pin.pfns, vec![finding::PfnRange { first: p.first_pfn, count: 3 }], "runs joined again");
}

// ---- compiler clones ----------------------------------------------------------------------

#[test]
fn holder_rules_suppressions_and_release_hooks_ignore_clone_suffixes() {
    for clone in [".constprop.0", ".isra.0", ".part.1", ".cold", ".isra.0.cold", ".llvm.4711"] {
        let caller = format!("{HOLDER}{clone}");
        let p = Proc::new(48);
        // The policy's release applies to the clone: revoked while held is an error.
        let mut s = Stream::default();
        s.pfn_map(&p).lookups(&p, &caller, MODULE, 0..1).owner_revoke(&p, 0, None).release(&p, &format!("{RELEASE}{clone}"), 0);
        let (live, summary) = run(&policy(), &s);
        assert_eq!(kinds(&live), ["pin-outlived-revocation"], "{caller}");
        assert_eq!(live[0].pin.holder.function.as_deref(), Some(caller.as_str()), "evidence keeps the kernel's symbol");
        assert_eq!(summary.pins_held, 0, "{RELEASE}{clone} released it");
        // A suppression naming the source function covers the clone.
        let suppress =
            Policy::parse(&format!("[[suppress]]\nholder = \"{HOLDER}\"\nkind = \"pin-leaked\"\nreason = \"r\"\n"), "s.toml").unwrap();
        let policy = policy().over(&suppress).unwrap();
        let mut s = Stream::default();
        s.pfn_map(&p).lookups(&p, &caller, MODULE, 0..1);
        let (_, summary) = run(&policy, &s);
        assert_eq!((summary.findings.len(), summary.suppressed), (0, 1), "{caller}");
    }
}

// ---- the catalog --------------------------------------------------------------------------

const VFIO: &str = "vfio_iommu_type1";

/// vfio's per-page lookups, then `vfio_unpin_pages_remote(dma, iova, pfn, npage, false)`.
fn vfio_stream(p: &Proc, release: Option<(u64, u64)>) -> Stream {
    let mut s = Stream::default();
    s.pfn_map(p).lookups(p, "vaddr_get_pfns.constprop.0", VFIO, 0..2);
    if let Some((pfn, npage)) = release {
        s.release_args(p, "vfio_unpin_pages_remote", [0xffff_8880_4000_0000, 0x11_0000, pfn, npage, 0, 0]);
    }
    s.owner_revoke(p, 0, None);
    s
}

#[test]
fn the_catalog_knows_vfio_releases_per_range() {
    let catalog = Policy::load(None, true).unwrap();
    let p = Proc::new(50);
    let (live, _) = run(&catalog, &vfio_stream(&p, Some((p.first_pfn + 1, 1))));
    assert_eq!(kinds(&live), ["pin-outlived-revocation"]);
    assert_eq!(live[0].pin.pfns, vec![finding::PfnRange { first: p.first_pfn, count: 1 }]);
    assert_eq!(live[0].pin.release, "vfio_unpin_pages_remote");
    let (live, summary) = run(&catalog, &vfio_stream(&p, Some((p.first_pfn, 2))));
    assert!(live.is_empty() && summary.findings.is_empty(), "{:?}", kinds(&summary.findings));
}

#[test]
fn a_user_rule_for_a_holder_overrides_the_catalogs_and_no_catalog_drops_it() {
    let p = Proc::new(51);
    let stream = vfio_stream(&p, None);
    let user = Policy::parse(&format!("[[holder]]\nmodule = \"{VFIO}\"\nfunction = \"vaddr_get_pfns\"\n"), "user.toml").unwrap();
    let layered = user.over(&crate::policy::Policy::catalog()).unwrap();
    assert_eq!(layered.holders[0].source, "user.toml");
    assert_eq!(kinds(&run(&layered, &stream).0), ["lookup-revoked"], "the user's rule (no release) wins");
    assert_eq!(kinds(&run(&Policy::load(None, true).unwrap(), &stream).0), ["pin-outlived-revocation"], "the catalog alone");
    assert_eq!(kinds(&run(&Policy::load(None, false).unwrap(), &stream).0), ["lookup-revoked"], "--no-catalog");
}

#[test]
fn vfio_refuses_ram_pfns_so_their_lookups_are_not_pins() {
    let p = Proc::new(52);
    let mut s = vfio_stream(&p, None);
    for e in &mut s.events {
        if let EventBody::RawLookup { ram, .. } = &mut e.body {
            *ram = true;
        }
    }
    let (live, summary) = run(&Policy::load(None, true).unwrap(), &s);
    assert!(live.is_empty() && summary.findings.is_empty() && summary.pins_held == 0, "{:?}", kinds(&summary.findings));
    // A holder without `ram_pfns = "refused"` pins them like any PFN.
    let (live, _) = run(&policy(), &s);
    assert_eq!(kinds(&live), ["lookup-revoked"]);
}

#[test]
fn kvm_lookups_revoked_are_suppressed_and_counted_per_reason() {
    let p = Proc::new(53);
    let mut s = Stream::default();
    s.pfn_map(&p).lookups(&p, "hva_to_pfn_remapped", "kvm", 0..1).owner_revoke(&p, 0, None);
    let (live, summary) = run(&Policy::load(None, true).unwrap(), &s);
    assert!(live.is_empty());
    assert_eq!(summary.suppressed, 1);
    let reason = "KVM re-validates its PFNs through its MMU notifier";
    assert_eq!(summary.suppressed_by.get(reason), Some(&1));
    assert_eq!(summary.notes(), [format!("suppressed: {reason}: 1")]);
}

// ---- pins whose vma stays unknown ---------------------------------------------------------

#[test]
fn a_pin_without_a_known_vma_is_counted_and_still_ends_at_exit() {
    let p = Proc::new(54);
    let mut s = Stream::default();
    // follow_pte before 6.10 carries only the mm; no PFN map of the run contains the address.
    s.lookups(&p, "other_lookup", MODULE, 0..2);
    for e in &mut s.events {
        if let EventBody::RawLookup { vma, .. } = &mut e.body {
            *vma = crate::vocab::event::Vma { mm: Hex(p.mm), ..Default::default() };
        }
    }
    s.owner_revoke(&p, 0, None);
    let mut c = Correlator::new(&policy());
    let live: Vec<Finding> = s.events.iter().flat_map(|e| c.handle(e)).collect();
    assert!(live.is_empty(), "an owner revocation cannot be matched without the vma");
    assert_eq!(c.pins_held(), 1, "two pages, one pin");
    s.vma_revoke(&p, Cause::Unmap, 0..1).exit(&p);
    let (live, summary) = run(&policy(), &s);
    assert_eq!(kinds(&live), ["lookup-revoked"], "the munmap finds it by mm");
    assert_eq!(summary.pins_without_vma, 1);
    assert_eq!(summary.pins_held, 0, "exit ends it");
    assert!(summary.notes()[0].starts_with("1 pin(s) without a known vma"), "{:?}", summary.notes());
}

// ---- bounded state ------------------------------------------------------------------------

#[test]
fn past_the_pin_limit_the_oldest_pin_is_evicted_and_counted() {
    let (a, b) = (Proc::new(60), Proc::new(61));
    let mut s = Stream::default();
    s.pfn_map(&a).pfn_map(&b).lookups(&a, HOLDER, MODULE, 0..2).lookups(&b, HOLDER, MODULE, 0..1).owner_revoke(&a, 0, None);
    let mut c = Correlator::with_options(&policy(), Options { max_pins: 1, max_pfnmaps: 1 });
    let live: Vec<Finding> = s.events.iter().flat_map(|e| c.handle(e)).collect();
    assert_eq!(live.len(), 1, "b's pin is the one left: a's revocation of the shared file finds it");
    assert_eq!(live[0].pin.task.tgid, b.tgid);
    assert_eq!(c.pfnmaps_tracked(), 1);
    let summary = c.finish();
    assert_eq!((summary.evicted_pins, summary.evicted_pfnmaps, summary.pins_held), (1, 1, 1));
    assert!(summary.evicted());
    assert!(
        summary.notes().iter().any(|n| n.starts_with("state limit reached: 1 pin(s) and 1 PFN map(s) evicted")),
        "{:?}",
        summary.notes()
    );
}

#[test]
fn the_fleet_stream_finds_every_pinned_file_revoked() {
    let policy = Policy::parse(FLEET_POLICY, "fleet.toml").unwrap();
    let fleet = Fleet::new(250);
    let mut c = Correlator::new(&policy);
    let live: Vec<Finding> = (0..).map_while(|n| fleet.event(n, 1000)).flat_map(|e| c.handle(&e)).collect();
    assert_eq!(live.len(), 250);
    assert!(live.iter().all(|f| f.kind == FindingKind::PinOutlivedRevocation));
    for j in 0..100 {
        for e in fleet.steady_cycle(j) {
            assert!(c.handle(&e).is_empty());
        }
    }
    assert_eq!(c.pins_held(), 250);
}

#[test]
fn a_pid_reused_after_exit_is_a_new_process_whose_revoked_lookup_is_reported() {
    let old = Proc::new(61);
    let new = Proc { mm: old.mm + 0x10_0000, vma: old.vma + 0x10_0000, start_time_ns: old.start_time_ns + 1_000, ..old.clone() };
    let mut s = Stream::default();
    s.pfn_map(&old).lookups(&old, "other_lookup", MODULE, 0..1).exit(&old);
    s.pfn_map(&new).lookups(&new, "other_lookup", MODULE, 0..1).owner_revoke(&new, 0, None);
    assert_eq!(kinds(&run(&policy(), &s).0), ["lookup-revoked"]);
}

#[test]
fn a_page_held_twice_by_a_counted_release_needs_two_releases() {
    // vfio maps the same user range at two IOVAs: each mapping holds the pages.
    let p = Proc::new(60);
    let mut s = Stream::default();
    s.pfn_map(&p)
        .lookups(&p, HOLDER, MODULE, 0..2)
        .lookups(&p, HOLDER, MODULE, 0..2)
        .release_args(&p, RELEASE, [p.first_pfn, 2, 0, 0, 0, 0])
        .owner_revoke(&p, 0, None);
    assert_eq!(kinds(&run(&counted_policy(), &s).0), ["pin-outlived-revocation"]);
    // Both mappings given back: nothing is held when the owner revokes.
    let mut s = Stream::default();
    s.pfn_map(&p)
        .lookups(&p, HOLDER, MODULE, 0..2)
        .lookups(&p, HOLDER, MODULE, 0..2)
        .release_args(&p, RELEASE, [p.first_pfn, 2, 0, 0, 0, 0])
        .release_args(&p, RELEASE, [p.first_pfn, 2, 0, 0, 0, 0])
        .owner_revoke(&p, 0, None);
    assert!(kinds(&run(&counted_policy(), &s).0).is_empty());
}
