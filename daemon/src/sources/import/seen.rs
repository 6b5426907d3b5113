//! In-file uniqueness: which key values (mail, loginName, displayName,
//! asset name) earlier rows of the file used, and on which line.
//!
//! Why a table of our own: a million-row users file has two million keys,
//! and a `HashMap<u64, u32>` pads each entry to 16 bytes and doubles its
//! table as it grows (two tables alive at the switch): 100 MiB at the peak.
//! This table keeps 12 bytes a slot in two parallel arrays, is sized once
//! from an estimate of the file's rows, and keeps memory near 30 MiB for a
//! million rows. Values are kept as 64-bit hashes of their lower-cased
//! text: two different values share one about once in 10^7 files of a
//! million rows, and would be reported as a duplicate.

/// The table: open addressing, linear probing, hash 0 marks a free slot.
#[derive(Debug)]
pub struct SeenKeys {
    hashes: Vec<u64>,
    lines: Vec<u32>,
    len: usize,
}

impl Default for SeenKeys {
    fn default() -> Self {
        Self::with_capacity(1024)
    }
}

/// Slots per key: a load of 80% keeps probe runs short.
fn slots_for(keys: usize) -> usize {
    (keys + keys / 4).max(16)
}

impl SeenKeys {
    /// A table for about `keys` keys.
    pub fn with_capacity(keys: usize) -> Self {
        let n = slots_for(keys);
        Self {
            hashes: vec![0; n],
            lines: vec![0; n],
            len: 0,
        }
    }

    /// Grow to hold about `keys` keys (the estimate made once the first
    /// rows have shown how long a row is). Never shrinks.
    pub fn reserve(&mut self, keys: usize) {
        if slots_for(keys) > self.hashes.len() {
            self.rehash(slots_for(keys));
        }
    }

    fn rehash(&mut self, slots: usize) {
        let old = std::mem::replace(
            self,
            Self {
                hashes: vec![0; slots],
                lines: vec![0; slots],
                len: 0,
            },
        );
        for (h, line) in old
            .hashes
            .into_iter()
            .zip(old.lines)
            .filter(|(h, _)| *h != 0)
        {
            let i = self.probe(h);
            self.hashes[i] = h;
            self.lines[i] = line;
            self.len += 1;
        }
    }

    /// The slot holding `h`, or the free slot where it would go.
    fn probe(&self, h: u64) -> usize {
        let n = self.hashes.len();
        // Map the hash onto 0..n without a division (Lemire's fastrange).
        let mut i = ((u128::from(h) * n as u128) >> 64) as usize;
        while self.hashes[i] != 0 && self.hashes[i] != h {
            i += 1;
            if i == n {
                i = 0;
            }
        }
        i
    }

    /// A stable 64-bit hash of `value` without regard to case, tagged by
    /// attribute (a mail and a loginName with the same text are different
    /// keys). Stable across runs, which a resumed import relies on.
    fn hash(tag: u8, value: &str) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a
        let mut eat = |b: u8| {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        };
        // The tag is a byte of its own before the value: mixed into the
        // first byte's round instead, tags `m` and `l` (one bit apart)
        // made mail `ok` and loginName `nk` one key (found by fuzzing).
        eat(tag);
        if value.is_ascii() {
            value.bytes().for_each(|b| eat(b.to_ascii_lowercase()));
        } else {
            let mut buf = [0u8; 4];
            for c in value.chars().flat_map(char::to_lowercase) {
                c.encode_utf8(&mut buf).bytes().for_each(&mut eat);
            }
        }
        // FNV's low bits mix poorly; finish with murmur3's fmix64 so the
        // high bits that pick the slot are good too.
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        h.max(1)
    }

    /// Record `value` at `line`; the earlier line when it was seen before.
    pub fn first_seen(&mut self, tag: u8, value: &str, line: u64) -> Option<u64> {
        if (self.len + 1) * 5 > self.hashes.len() * 4 {
            self.rehash(self.hashes.len() * 2);
        }
        let h = Self::hash(tag, value);
        let i = self.probe(h);
        if self.hashes[i] == h {
            return Some(u64::from(self.lines[i]));
        }
        self.hashes[i] = h;
        self.lines[i] = u32::try_from(line).unwrap_or(u32::MAX);
        self.len += 1;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_never_stands_in_for_a_character() {
        let mut s = SeenKeys::with_capacity(4);
        assert_eq!(s.first_seen(b'l', "nk", 5), None);
        assert_eq!(
            s.first_seen(b'm', "Ok", 10),
            None,
            "mail ok is not loginName nk"
        );
        assert_eq!(s.first_seen(b'm', "ok", 11), Some(10));
    }

    #[test]
    fn remembers_first_lines_without_case() {
        let mut s = SeenKeys::with_capacity(4);
        assert_eq!(s.first_seen(b'm', "Ann@Example.org", 2), None);
        assert_eq!(
            s.first_seen(b'l', "ann@example.org", 3),
            None,
            "tags keep attributes apart"
        );
        assert_eq!(s.first_seen(b'm', "ANN@EXAMPLE.ORG", 9), Some(2));
        assert_eq!(s.first_seen(b'm', "Ärger@example.org", 10), None);
        assert_eq!(s.first_seen(b'm', "ärger@EXAMPLE.org", 11), Some(10));
    }

    #[test]
    fn grows_and_keeps_everything() {
        let mut s = SeenKeys::with_capacity(10);
        for i in 0..100_000u64 {
            assert_eq!(
                s.first_seen(b'm', &format!("user{i}@example.org"), i + 2),
                None
            );
        }
        s.reserve(300_000);
        for i in 0..100_000u64 {
            assert_eq!(
                s.first_seen(b'm', &format!("USER{i}@example.org"), 0),
                Some(i + 2)
            );
        }
        assert!(s.hashes.len() >= 300_000, "reserve sized the table");
    }
}
