use super::{synthetic::*, *};
use crate::policy::Policy;

const HOLDER: &str = "pfnaudit_pin_tracked";
const MODULE: &str = "pfnaudit_test";
const RELEASE: &str = "pfnaudit_unpin_tracked";

fn policy() -> Policy {
    Policy::parse(
        &format!("[[holder]]\nmodule = \"{MODULE}\"\nfunction = \"{HOLDER}\"\nrelease = [\"{RELEASE}\"]\n"),
        "test.toml",
    )
    .unwrap()
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
    assert_eq!((r.cause, r.hook.as_str()), (Cause::OwnerRevoke, "unmap_mapping_range"));
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
    assert!(live[0].message.contains(&format!("4 page(s) of user memory at {:#x} after the user unmapped it", p.start)), "{}", live[0].message);
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
    let policy = Policy::parse(
        &format!("[[holder]]\nfunction = \"{HOLDER}\"\nrelease = [\"{RELEASE}\"]\nrelease_match = \"arg0\"\nrelease_arg_is = \"pfn\"\n"),
        "t.toml",
    )
    .unwrap();
    let (a, b) = (Proc::new(18), Proc::new(19));
    let mut s = Stream::default();
    s.pfn_map(&a).pfn_map(&b).lookups(&a, HOLDER, MODULE, 0..1).lookups(&b, HOLDER, MODULE, 0..1).release(&b, RELEASE, a.first_pfn);
    let (_, summary) = run(&policy, &s);
    assert_eq!(kinds(&summary.findings), ["pin-leaked"]);
    assert_eq!(summary.findings[0].pin.task.tgid, b.tgid);
}

#[test]
fn suppressed_findings_are_counted_not_reported() {
    let policy = Policy::parse(
        &format!("[[suppress]]\nholder = \"{MODULE}\"\nkind = \"lookup-revoked\"\nreason = \"test\"\n"),
        "t.toml",
    )
    .unwrap();
    let p = Proc::new(20);
    let mut s = Stream::default();
    s.pfn_map(&p).lookups(&p, HOLDER, MODULE, 0..1).owner_revoke(&p, 0, None);
    let (live, summary) = run(&policy, &s);
    assert!(live.is_empty());
    assert_eq!(summary.suppressed, 1);
}

#[test]
fn kernel_internal_lookups_are_not_pins() {
    let p = Proc::new(21);
    let mut s = Stream::default();
    s.pfn_map(&p).lookups(&p, "follow_phys", "", 0..1).owner_revoke(&p, 0, None);
    let (live, summary) = run(&policy(), &s);
    assert!(live.is_empty() && summary.findings.is_empty() && summary.pins_held == 0);
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
    s.pfn_map(&p).lookups(&p, HOLDER, MODULE, 0..1).owner_revoke(&p, 0, None).vma_revoke(&p, Cause::Zap, 0..1).vma_revoke(&p, Cause::Unmap, 0..1);
    let (live, summary) = run(&policy(), &s);
    assert_eq!(kinds(&live), ["pin-outlived-revocation", "pin-outlived-unmap"]);
    assert_eq!(kinds(&summary.findings), ["pin-outlived-revocation", "pin-outlived-unmap", "pin-leaked"]);
    assert_eq!(summary.counts.get("pin-leaked"), Some(&1));
}
