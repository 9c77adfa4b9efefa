//! Fast parsing of recorded NDJSON lines for `replay`. `event` records — all but a handful of a
//! recording — are read through borrowed wire structs without `#[serde(flatten)]` (which makes
//! serde buffer every field of an internally tagged record into an intermediate tree) and with
//! hex strings parsed in place; anything else, and any event line the fast path does not accept,
//! goes through the [`Record`] deserializer, so what is accepted, what is refused and the error
//! messages stay exactly those of `serde_json::from_str::<Record>`.
use std::borrow::Cow;

use serde::Deserialize;

use crate::{
    event::{Cause, Event, EventBody, Frame, Hex, Task, Vma},
    record::Record,
};

/// One NDJSON line as a record.
pub fn record(line: &str) -> Result<Record, serde_json::Error> {
    if let Some(event) = fast_event(line) {
        return Ok(Record::Event(event));
    }
    serde_json::from_str(line)
}

/// The line as an `event` record, if the fast path reads it.
pub fn fast_event(line: &str) -> Option<Event> {
    // As `run --events` writes them (`type` first); an event written otherwise takes the slow path.
    if !line.starts_with("{\"type\":\"event\"") {
        return None;
    }
    let wire: WireEvent = serde_json::from_str(line).ok()?;
    if wire.record_type != "event" {
        return None;
    }
    wire.into_event()
}

/// `0x…` as [`Hex`] reads it, from a borrowed string.
#[derive(Clone, Copy)]
struct WireHex(u64);

impl<'de> Deserialize<'de> for WireHex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(HexVisitor)
    }
}

/// Reads the string where it is (a `Cow<str>` would be a new `String` per pointer).
struct HexVisitor;

impl serde::de::Visitor<'_> for HexVisitor {
    type Value = WireHex;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a 0x-prefixed hex string")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<WireHex, E> {
        let digits = s.strip_prefix("0x").ok_or_else(|| E::custom("expected 0x"))?;
        u64::from_str_radix(digits, 16).map(WireHex).map_err(E::custom)
    }
}

impl From<WireHex> for Hex {
    fn from(h: WireHex) -> Self {
        Hex(h.0)
    }
}

#[derive(Deserialize)]
struct WireTask<'a> {
    tgid: u32,
    pid: u32,
    start_time_ns: u64,
    #[serde(borrow)]
    comm: Cow<'a, str>,
}

#[derive(Deserialize)]
struct WireFrame<'a> {
    addr: WireHex,
    #[serde(default, borrow)]
    function: Option<Cow<'a, str>>,
    #[serde(default)]
    offset: u64,
    #[serde(default, borrow)]
    module: Option<Cow<'a, str>>,
}

impl WireFrame<'_> {
    fn into_frame(self) -> Frame {
        Frame {
            addr: self.addr.into(),
            function: self.function.map(Cow::into_owned),
            offset: self.offset,
            module: self.module.map(Cow::into_owned),
        }
    }
}

#[derive(Deserialize)]
struct WireVma<'a> {
    vma: WireHex,
    mm: WireHex,
    start: WireHex,
    end: WireHex,
    flags: WireHex,
    pgoff: u64,
    mapping: WireHex,
    ino: u64,
    #[serde(borrow)]
    dev: Cow<'a, str>,
    #[serde(default, borrow)]
    path: Option<Cow<'a, str>>,
}

impl WireVma<'_> {
    fn into_vma(self) -> Vma {
        Vma {
            vma: self.vma.into(),
            mm: self.mm.into(),
            start: self.start.into(),
            end: self.end.into(),
            flags: self.flags.into(),
            pgoff: self.pgoff,
            mapping: self.mapping.into(),
            ino: self.ino,
            dev: self.dev.into_owned(),
            path: self.path.map(Cow::into_owned),
        }
    }
}

/// A field that is a plain (defaulted or required) value in [`EventBody`]: absent is `None`, but
/// `null` is refused as the `Record` deserializer refuses it.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Every field an `event` record may have, flat: the body's fields are checked per kind in
/// [`WireEvent::into_event`] (a missing required one sends the line to the slow path).
#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(rename = "type", borrow)]
    record_type: Cow<'a, str>,
    seq: u64,
    ts_ns: u64,
    #[serde(borrow)]
    hook: Cow<'a, str>,
    #[serde(borrow)]
    task: WireTask<'a>,
    #[serde(default, borrow)]
    caller: Option<WireFrame<'a>>,
    #[serde(default, borrow)]
    stack: Vec<WireFrame<'a>>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    vma: Option<WireVma<'a>>,
    #[serde(default, deserialize_with = "present")]
    addr: Option<WireHex>,
    #[serde(default, deserialize_with = "present")]
    address: Option<WireHex>,
    #[serde(default, deserialize_with = "present")]
    pfn: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    pages: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    ram: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    vec: Option<WireHex>,
    #[serde(default, deserialize_with = "present")]
    start: Option<WireHex>,
    #[serde(default, deserialize_with = "present")]
    end: Option<WireHex>,
    #[serde(default, deserialize_with = "present")]
    mm: Option<WireHex>,
    #[serde(default, deserialize_with = "present")]
    nr_frames: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    is_pfns: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    got_ref: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pfns: Option<Vec<u64>>,
    #[serde(default, deserialize_with = "present")]
    cause: Option<Cause>,
    mapping: Option<WireHex>,
    #[serde(default, deserialize_with = "present")]
    first_pgoff: Option<u64>,
    nr_pages: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    args: Option<Vec<WireHex>>,
}

impl WireEvent<'_> {
    fn into_event(self) -> Option<Event> {
        let body = match &*self.kind {
            "pfn-map" => EventBody::PfnMap { vma: self.vma?.into_vma(), addr: self.addr?.into(), pfn: self.pfn?, pages: self.pages? },
            "raw-lookup" => EventBody::RawLookup {
                vma: self.vma?.into_vma(),
                address: self.address?.into(),
                pfn: self.pfn?,
                ram: self.ram.unwrap_or(false),
            },
            "frames-get" => EventBody::FramesGet {
                vec: self.vec?.into(),
                start: self.start?.into(),
                mm: self.mm?.into(),
                nr_frames: self.nr_frames?,
                is_pfns: self.is_pfns?,
                got_ref: self.got_ref?,
                pfns: self.pfns?,
            },
            "frames-put" => EventBody::FramesPut { vec: self.vec?.into() },
            "revoke" => EventBody::Revoke {
                cause: self.cause?,
                mapping: self.mapping.map(Hex::from),
                first_pgoff: self.first_pgoff.unwrap_or(0),
                nr_pages: self.nr_pages,
                vma: self.vma.map(WireVma::into_vma),
                start: self.start.map_or(Hex(0), Hex::from),
                end: self.end.map_or(Hex(0), Hex::from),
                mm: self.mm?.into(),
            },
            "vma-free" => EventBody::VmaFree { vma: self.vma?.into_vma() },
            "release-call" => EventBody::ReleaseCall { args: self.args?.into_iter().map(Hex::from).collect() },
            "task-exit" => EventBody::TaskExit {},
            _ => return None,
        };
        Some(Event {
            seq: self.seq,
            ts_ns: self.ts_ns,
            hook: self.hook.into_owned(),
            task: Task {
                tgid: self.task.tgid,
                pid: self.task.pid,
                start_time_ns: self.task.start_time_ns,
                comm: self.task.comm.into_owned(),
            },
            caller: self.caller.map(WireFrame::into_frame),
            stack: self.stack.into_iter().map(WireFrame::into_frame).collect(),
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::synthetic::{Fleet, Proc, Stream};

    fn every_kind() -> Stream {
        let p = Proc::new(3);
        let mut s = Stream::default();
        s.pfn_map(&p)
            .lookups(&p, "drv_pin", "drv", 0..2)
            .frames_get(&p, 0x1000, true, 2)
            .frames_put(&p, 0x1000)
            .release_args(&p, "drv_unpin", [1, 2, 3, 4, 5, 6])
            .owner_revoke(&p, 1, Some(2))
            .owner_revoke(&p, 0, None)
            .vma_revoke(&p, Cause::Zap, 0..2)
            .exit(&p)
            .push("vm_area_free", p.task(), None, EventBody::VmaFree { vma: Vma { path: None, ..p.vma() } });
        if let EventBody::RawLookup { ram, .. } = &mut s.events[1].body {
            *ram = true;
        }
        s
    }

    /// Every event kind, written as `run --events` writes it, reads back the same through the
    /// fast path and through the `Record` deserializer.
    #[test]
    fn the_fast_path_reads_every_event_kind_as_the_record_deserializer_does() {
        let fleet = Fleet::new(3);
        let events = every_kind().events.into_iter().chain((0..).map_while(|n| fleet.event(n, 2)));
        for e in events {
            let line = serde_json::to_string(&Record::Event(e.clone())).unwrap();
            assert_eq!(fast_event(&line).as_ref(), Some(&e), "{line}");
            assert_eq!(record(&line).unwrap(), serde_json::from_str::<Record>(&line).unwrap());
        }
    }

    #[test]
    fn lines_the_fast_path_refuses_get_the_record_deserializers_answer() {
        let e = every_kind().events.remove(1);
        let line = serde_json::to_string(&Record::Event(e)).unwrap();
        // An escaped string, a missing required body field, a bad hex, a non-event record.
        let escaped = line.replace("\"comm\":\"scenario\"", "\"comm\":\"sce\\u006eario\"");
        assert_eq!(record(&escaped).unwrap(), serde_json::from_str::<Record>(&escaped).unwrap());
        for bad in [
            line.replace("\"pfn\":", "\"pfx\":"),
            line.replace("\"pfn\":", "\"ram\":null,\"pfn\":"),
            line.replace("\"address\":\"0x", "\"address\":\"1x"),
            "{\"type\":\"lost\",\"hook\":\"h\",\"count\":1,\"ts_ns\":2}".to_string(),
        ] {
            let want = serde_json::from_str::<Record>(&bad).map_err(|e| e.to_string());
            assert_eq!(record(&bad).map_err(|e| e.to_string()), want, "{bad}");
        }
    }
}
