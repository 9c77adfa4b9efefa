//! Holds `--pins N` (default 1 000 000) live pins of the fleet in one correlator and prints what
//! it holds (with bounds that evict nothing): run it under `/usr/bin/time -v` for the correlator's peak memory at that size.
use auditor::{
    correlate::{
        Correlator, Options,
        synthetic::{FLEET_POLICY, Fleet},
    },
    policy::Policy,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pins = args.iter().position(|a| a == "--pins").and_then(|i| args.get(i + 1)).map_or(1_000_000, |v| v.parse().expect("a number"));
    let policy = Policy::parse(FLEET_POLICY, "fleet.toml").expect("fleet policy");
    let fleet = Fleet::new(pins);
    let n = usize::try_from(pins).expect("fits");
    let mut correlator = Correlator::with_options(&policy, Options { max_pins: n, max_pfnmaps: n });
    for n in 0..2 * pins {
        correlator.handle(&fleet.event(n, 0).expect("setup event"));
    }
    println!("pins held: {}, PFN maps: {}", correlator.pins_held(), correlator.pfnmaps_tracked());
}
