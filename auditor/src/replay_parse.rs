//! Fast parsing of recorded NDJSON lines for `replay`. `event` records — all but a handful of a
//! recording — are read by a reader of exactly the bytes `run --events` writes for an [`Event`]
//! (`serde_json::to_string` of `Record::Event`: fixed field order, optional fields left out,
//! hex strings, no escapes). Any line it does not recognize — another record, other spacing or
//! field order, an escaped string, a malformed value — goes through the [`Record`] deserializer,
//! so what is accepted, what is refused and the error messages stay exactly those of
//! `serde_json::from_str::<Record>`: the fast reader only ever accepts a line that deserializer
//! reads to the same event (tests below, on every event kind and on mutated lines).
//!
//! Hand-written because the general parsers cost more per field than the correlator costs per
//! event: serde_json with borrowed wire structs ~1.4 µs a line here, simd-json 0.19 and sonic-rs
//! 0.5 (without `-C target-cpu`, which a portable static binary cannot use) slower still; a
//! recorded line is ~60 short keys and values (README "Correlator").
use crate::vocab::{
    event::{Cause, Event, EventBody, Frame, Hex, HookRef, Task, Vma},
    record::Record,
};

/// One NDJSON line as a record.
pub fn record(line: &str) -> Result<Record, serde_json::Error> {
    if let Some(event) = fast_event(line) {
        return Ok(Record::Event(event));
    }
    serde_json::from_str(line)
}

/// The line as an `event` record, if it is one written as `run --events` writes them.
pub fn fast_event(line: &str) -> Option<Event> {
    let mut c = Cursor { line, s: line.as_bytes(), at: 0 };
    let event = c.event()?;
    (c.at == c.s.len()).then_some(event)
}

const NOT_HEX: u8 = 0xff;

/// The value of each hex digit byte (either case, as `u64::from_str_radix` reads them).
static HEX_DIGIT: [u8; 256] = {
    let mut t = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Reads a line left to right; every method returns `None` at the first byte it does not expect.
struct Cursor<'a> {
    line: &'a str,
    s: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// Exactly these bytes.
    fn lit(&mut self, lit: &str) -> Option<()> {
        let lit = lit.as_bytes();
        if self.s.get(self.at..self.at + lit.len())? != lit {
            return None;
        }
        self.at += lit.len();
        Some(())
    }

    /// Key `key` (with its separators) and its value, read by `value`.
    fn field<T>(&mut self, key: &str, value: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        self.lit(key)?;
        value(self)
    }

    /// [`Cursor::field`] if key `key` comes next (`Some(None)` if it does not: a field left out).
    fn optional<T>(&mut self, key: &str, value: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.has(key) { value(self).map(Some) } else { Some(None) }
    }

    /// These bytes if they come next.
    fn has(&mut self, lit: &str) -> bool {
        self.lit(lit).is_some()
    }

    /// A JSON unsigned integer as serde_json writes it (no sign, no leading zero, no fraction).
    fn u64(&mut self) -> Option<u64> {
        let start = self.at;
        let mut n: u64 = 0;
        while let Some(d) = self.s.get(self.at).filter(|b| b.is_ascii_digit()) {
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.at += 1;
        }
        let digits = self.at - start;
        if digits == 0 || (digits > 1 && self.s[start] == b'0') || matches!(self.s.get(self.at), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        Some(n)
    }

    fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.u64()?).ok()
    }

    fn bool(&mut self) -> Option<bool> {
        if self.has("true") {
            Some(true)
        } else if self.has("false") {
            Some(false)
        } else {
            None
        }
    }

    /// A string without escapes or control characters (those go to the slow path).
    fn str(&mut self) -> Option<&'a str> {
        self.lit("\"")?;
        let start = self.at;
        let end = start + memchr::memchr(b'"', &self.s[start..])?;
        // Without an escape or a control character (serde_json refuses those unescaped).
        if self.s[start..end].iter().fold(false, |bad, &b| bad | (b == b'\\') | (b < 0x20)) {
            return None;
        }
        self.at = end + 1;
        // Quotes are ASCII: the bytes between two are whole characters of the line.
        self.line.get(start..end)
    }

    /// `"0x…"` with 1 to 16 hex digits, as [`Hex`] reads it.
    fn hex(&mut self) -> Option<Hex> {
        self.lit("\"0x")?;
        let mut n: u64 = 0;
        let start = self.at;
        while let Some(&d) = self.s.get(self.at).map(|&b| &HEX_DIGIT[usize::from(b)]).filter(|&&d| d != NOT_HEX) {
            n = n.checked_mul(16)? | u64::from(d);
            self.at += 1;
        }
        if self.at == start {
            return None;
        }
        self.lit("\"")?;
        Some(Hex(n))
    }

    /// `[item,item…]`.
    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        self.lit("[")?;
        let mut out = Vec::new();
        if self.has("]") {
            return Some(out);
        }
        loop {
            out.push(item(self)?);
            if self.has("]") {
                return Some(out);
            }
            self.lit(",")?;
        }
    }

    fn frame(&mut self) -> Option<Frame> {
        let addr = self.field("{\"addr\":", Self::hex)?;
        let function = self.optional(",\"function\":", |c| c.str().map(str::to_owned))?;
        let offset = self.field(",\"offset\":", Self::u64)?;
        let module = self.optional(",\"module\":", |c| c.str().map(str::to_owned))?;
        let file = self.optional(",\"file\":", |c| c.str().map(str::to_owned))?;
        let line = self.optional(",\"line\":", Self::u32)?;
        self.lit("}")?;
        Some(Frame { addr, function, offset, module, file, line })
    }

    fn vma(&mut self) -> Option<Vma> {
        let vma = self.field("{\"vma\":", Self::hex)?;
        let mm = self.field(",\"mm\":", Self::hex)?;
        let start = self.field(",\"start\":", Self::hex)?;
        let end = self.field(",\"end\":", Self::hex)?;
        let flags = self.field(",\"flags\":", Self::hex)?;
        let pgoff = self.field(",\"pgoff\":", Self::u64)?;
        let mapping = self.field(",\"mapping\":", Self::hex)?;
        let ino = self.field(",\"ino\":", Self::u64)?;
        let dev = self.field(",\"dev\":", Self::str)?.to_owned();
        let path = self.optional(",\"path\":", |c| c.str().map(str::to_owned))?;
        self.lit("}")?;
        Some(Vma { vma, mm, start, end, flags, pgoff, mapping, ino, dev, path })
    }

    fn cause(&mut self) -> Option<Cause> {
        Some(match self.str()? {
            "owner-revoke" => Cause::OwnerRevoke,
            "zap" => Cause::Zap,
            "unmap" => Cause::Unmap,
            "exit" => Cause::Exit,
            _ => return None,
        })
    }

    /// `{"type":"event",…}` in the order [`Event`] and [`EventBody`] serialize.
    fn event(&mut self) -> Option<Event> {
        let seq = self.field("{\"type\":\"event\",\"seq\":", Self::u64)?;
        let ts_ns = self.field(",\"ts_ns\":", Self::u64)?;
        let hook = HookRef::from_name(self.field(",\"hook\":", Self::str)?);
        let symbol = self.optional(",\"symbol\":", |c| c.str().map(str::to_owned))?;
        let tgid = self.field(",\"task\":{\"tgid\":", Self::u32)?;
        let pid = self.field(",\"pid\":", Self::u32)?;
        let start_time_ns = self.field(",\"start_time_ns\":", Self::u64)?;
        let comm = self.field(",\"comm\":", Self::str)?.to_owned();
        self.lit("}")?;
        let caller = self.optional(",\"caller\":", Self::frame)?;
        self.lit(",\"stack\":")?;
        let stack = self.list(Self::frame)?;
        self.lit(",\"kind\":")?;
        let body = match self.str()? {
            "pfn-map" => {
                let vma = self.field(",\"vma\":", Self::vma)?;
                let addr = self.field(",\"addr\":", Self::hex)?;
                let pfn = self.field(",\"pfn\":", Self::u64)?;
                self.lit(",\"pages\":")?;
                EventBody::PfnMap { vma, addr, pfn, pages: self.u64()? }
            }
            "raw-lookup" => {
                let vma = self.field(",\"vma\":", Self::vma)?;
                let address = self.field(",\"address\":", Self::hex)?;
                let pfn = self.field(",\"pfn\":", Self::u64)?;
                // Written only when true.
                let ram = self.has(",\"ram\":true");
                EventBody::RawLookup { vma, address, pfn, ram }
            }
            "frames-get" => {
                let vec = self.field(",\"vec\":", Self::hex)?;
                let start = self.field(",\"start\":", Self::hex)?;
                let mm = self.field(",\"mm\":", Self::hex)?;
                let nr_frames = self.field(",\"nr_frames\":", Self::u32)?;
                let is_pfns = self.field(",\"is_pfns\":", Self::bool)?;
                let got_ref = self.field(",\"got_ref\":", Self::bool)?;
                self.lit(",\"pfns\":")?;
                EventBody::FramesGet { vec, start, mm, nr_frames, is_pfns, got_ref, pfns: self.list(Self::u64)? }
            }
            "frames-put" => {
                self.lit(",\"vec\":")?;
                EventBody::FramesPut { vec: self.hex()? }
            }
            "revoke" => {
                let cause = self.field(",\"cause\":", Self::cause)?;
                let mapping = self.optional(",\"mapping\":", Self::hex)?;
                let first_pgoff = self.field(",\"first_pgoff\":", Self::u64)?;
                let nr_pages = self.optional(",\"nr_pages\":", Self::u64)?;
                let vma = self.optional(",\"vma\":", Self::vma)?;
                let start = self.field(",\"start\":", Self::hex)?;
                let end = self.field(",\"end\":", Self::hex)?;
                self.lit(",\"mm\":")?;
                EventBody::Revoke { cause, mapping, first_pgoff, nr_pages, vma, start, end, mm: self.hex()? }
            }
            "vma-free" => {
                self.lit(",\"vma\":")?;
                EventBody::VmaFree { vma: self.vma()? }
            }
            "release-call" => {
                self.lit(",\"args\":")?;
                EventBody::ReleaseCall { args: self.list(Self::hex)? }
            }
            "task-exit" => EventBody::TaskExit {},
            _ => return None,
        };
        self.lit("}")?;
        Some(Event { seq, ts_ns, hook, symbol, task: Task { tgid, pid, start_time_ns, comm }, caller, stack, body })
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
        // A frame without a function, an empty stack and PFN list, a vma without path in a revocation.
        s.events[2].stack.push(Frame { addr: Hex(0), function: None, offset: 0, module: None, file: None, line: None });
        // A module frame with its source line, an event with the symbol its hook was attached to.
        s.events[2].stack[1].file = Some("drivers/drv/drv.c".into());
        s.events[2].stack[1].line = Some(42);
        s.events[5].symbol = Some("zap_special_vma_range".into());
        if let EventBody::FramesGet { pfns, .. } = &mut s.events[3].body {
            pfns.clear();
        }
        s.events[4].stack.clear();
        s
    }

    fn lines() -> Vec<String> {
        let fleet = Fleet::new(3);
        let events = every_kind().events.into_iter().chain((0..).map_while(|n| fleet.event(n, 2)));
        events.map(|e| serde_json::to_string(&Record::Event(e)).unwrap()).collect()
    }

    /// Every event kind, written as `run --events` writes it, reads back the same through the
    /// fast path and through the `Record` deserializer.
    #[test]
    fn the_fast_path_reads_every_event_kind_as_the_record_deserializer_does() {
        for line in lines() {
            let Ok(Record::Event(want)) = serde_json::from_str::<Record>(&line) else { panic!("{line}") };
            assert_eq!(fast_event(&line).as_ref(), Some(&want), "{line}");
        }
    }

    #[test]
    fn lines_the_fast_path_refuses_get_the_record_deserializers_answer() {
        let line = lines().remove(1);
        // An escaped string, a missing required body field, a bad hex, a non-event record.
        let escaped = line.replace("\"comm\":\"scenario\"", "\"comm\":\"sce\\u006eario\"");
        assert!(fast_event(&escaped).is_none());
        assert_eq!(record(&escaped).unwrap(), serde_json::from_str::<Record>(&escaped).unwrap());
        for bad in [
            line.replace("\"pfn\":", "\"pfx\":"),
            line.replace("\"pfn\":", "\"ram\":null,\"pfn\":"),
            line.replace("\"address\":\"0x", "\"address\":\"1x"),
            line.replace("\"seq\":1", "\"seq\":01"),
            "{\"type\":\"lost\",\"hook\":\"h\",\"count\":1,\"ts_ns\":2}".to_string(),
        ] {
            let want = serde_json::from_str::<Record>(&bad).map_err(|e| e.to_string());
            assert_eq!(record(&bad).map_err(|e| e.to_string()), want, "{bad}");
        }
    }

    /// Lines with one byte changed, removed or doubled, or cut short: `record` gives what the
    /// `Record` deserializer gives (the same event, or the same error), whichever path read them.
    #[test]
    fn damaged_lines_get_the_record_deserializers_answer() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        const BYTES: &[u8] = b"0123456789abcdefxX\"\\{}[],: -.eE+tnul";
        let mut fast = 0;
        for line in lines() {
            for _ in 0..300 {
                let mut b = line.clone().into_bytes();
                let at = next(b.len());
                match next(4) {
                    0 => b[at] = BYTES[next(BYTES.len())],
                    1 => {
                        b.remove(at);
                    }
                    2 => b.insert(at, b[at]),
                    _ => b.truncate(at),
                }
                let Ok(damaged) = String::from_utf8(b) else { continue };
                let want = serde_json::from_str::<Record>(&damaged).map_err(|e| e.to_string());
                assert_eq!(record(&damaged).map_err(|e| e.to_string()), want, "{damaged}");
                fast += usize::from(fast_event(&damaged).is_some());
            }
        }
        assert!(fast > 0, "some damaged lines are still canonical events (a changed digit)");
    }
}
