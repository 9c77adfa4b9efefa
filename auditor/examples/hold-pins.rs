//! Holds `--pins N` (default 1 000 000) live pins of the fleet, each on its own PFN map, in one
//! correlator and prints what it holds: run it under `/usr/bin/time -v` for the correlator's peak
//! memory at that size. The bounds evict nothing unless `--max-pfnmaps M` is given (e.g. the
//! default bound, 262144): then only the newest M PFN maps are tracked, while every pin keeps its
//! vma.
use auditor::{
    correlate::{
        Correlator, Options,
        synthetic::{FLEET_POLICY, Fleet},
    },
    policy::Policy,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(|v| v.parse::<u64>().expect("a number"));
    let pins = arg("--pins").unwrap_or(1_000_000);
    let policy = Policy::parse(FLEET_POLICY, "fleet.toml").expect("fleet policy");
    let fleet = Fleet::new(pins);
    let n = usize::try_from(pins).expect("fits");
    let max_pfnmaps = arg("--max-pfnmaps").map_or(n, |m| usize::try_from(m).expect("fits"));
    let mut correlator = Correlator::with_options(&policy, Options { max_pins: n, max_pfnmaps });
    for n in 0..2 * pins {
        correlator.handle(&fleet.event(n, 0).expect("setup event"));
    }
    println!("pins held: {}, PFN maps tracked: {}", correlator.pins_held(), correlator.pfnmaps_tracked());
}
