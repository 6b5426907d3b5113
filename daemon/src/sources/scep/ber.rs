//! BER to DER (X.690 §8 to §10), because SCEP clients and servers send BER
//! and the `der` crate reads DER only: micromdm's scep (Go) encodes an
//! envelope's `encryptedContent` as a constructed `[0] { OCTET STRING }`,
//! other CMS writers stream with indefinite lengths.
//!
//! [`to_der`] rewrites what does not need the ASN.1 module to be known:
//! indefinite lengths become definite (minimal), and constructed universal
//! strings (OCTET STRING, BIT STRING, the character strings) become one
//! primitive string. Everything else is copied as it is: a context-specific
//! tag that is an implicit OCTET STRING cannot be told from an explicit
//! wrapper without the module, so `cms.rs` joins those segments itself
//! ([`join_segments`]).
//!
//! The input is a client's: every length is checked against what is left,
//! nothing is allocated from a declared length, and nesting is bounded
//! ([`MAX_DEPTH`]) so recursion cannot exhaust the stack.

/// Deepest nesting accepted. A SCEP message is about 12 levels deep at its
/// deepest (a certificate's extension inside a SignedData inside a
/// ContentInfo); the envelope and the CSR are converted separately.
pub const MAX_DEPTH: usize = 32;

/// Why a BER value was refused; `usize` fields are byte offsets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BerError {
    #[error("BER: the input ends inside a value (at byte {0})")]
    Truncated(usize),
    #[error("BER: a length at byte {0} does not fit in 32 bits")]
    LengthTooLong(usize),
    #[error("BER: a tag number at byte {0} does not fit in 28 bits")]
    TagTooLong(usize),
    #[error("BER: the reserved length octet 0xFF at byte {0}")]
    ReservedLength(usize),
    #[error("BER: an indefinite length on a primitive value at byte {0}")]
    IndefinitePrimitive(usize),
    #[error("BER: an end-of-contents marker outside an indefinite length at byte {0}")]
    UnexpectedEoc(usize),
    #[error("BER: a segment of the constructed string at byte {0} is not of its type")]
    BadSegment(usize),
    #[error("BER: a BIT STRING segment at byte {0} has unused bits but is not the last")]
    BadBitString(usize),
    #[error("BER: nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("BER: {0} bytes after the value")]
    TrailingData(usize),
    #[error("BER: empty input")]
    Empty,
}

/// The DER encoding of the single BER value `input` (nothing may follow it).
pub fn to_der(input: &[u8]) -> Result<Vec<u8>, BerError> {
    if input.is_empty() {
        return Err(BerError::Empty);
    }
    let mut out = Vec::with_capacity(input.len());
    let end = convert(input, 0, 0, &mut out)?;
    if end != input.len() {
        return Err(BerError::TrailingData(input.len() - end));
    }
    Ok(out)
}

/// The contents of a string that may be encoded constructed: `value` is the
/// contents of a `[n]`-tagged value whose type is an implicit OCTET STRING,
/// `constructed` its form. Primitive: the bytes; constructed: the DER
/// OCTET STRING segments inside, joined.
pub fn join_segments(value: &[u8], constructed: bool) -> Result<Vec<u8>, BerError> {
    if !constructed {
        return Ok(value.to_vec());
    }
    let mut out = Vec::with_capacity(value.len());
    let mut pos = 0;
    while pos < value.len() {
        let h = header(value, pos)?;
        if h.tag != [OCTET_STRING] {
            return Err(BerError::BadSegment(pos));
        }
        let Length::Definite(len) = h.length else {
            return Err(BerError::BadSegment(pos));
        };
        let end = h.content_start + len;
        out.extend_from_slice(&value[h.content_start..end]);
        pos = end;
    }
    Ok(out)
}

const OCTET_STRING: u8 = 0x04;
const BIT_STRING: u8 = 0x03;
const CONSTRUCTED: u8 = 0x20;

/// A value's identifier and length octets.
struct Header<'a> {
    /// The identifier octets, as they were.
    tag: &'a [u8],
    constructed: bool,
    length: Length,
    content_start: usize,
}

enum Length {
    Definite(usize),
    Indefinite,
}

/// Read the header at `pos`; a definite length is checked against the input.
fn header(input: &[u8], pos: usize) -> Result<Header<'_>, BerError> {
    let first = *input.get(pos).ok_or(BerError::Truncated(pos))?;
    let mut p = pos + 1;
    if first & 0x1f == 0x1f {
        // High tag number form: base-128 octets, the last without bit 8.
        loop {
            let b = *input.get(p).ok_or(BerError::Truncated(p))?;
            p += 1;
            if b & 0x80 == 0 {
                break;
            }
            if p - pos > 5 {
                return Err(BerError::TagTooLong(pos));
            }
        }
    }
    let tag = &input[pos..p];
    let constructed = first & CONSTRUCTED != 0;
    let l = *input.get(p).ok_or(BerError::Truncated(p))?;
    p += 1;
    let length = match l {
        0x80 => Length::Indefinite,
        0xff => return Err(BerError::ReservedLength(p - 1)),
        short if short < 0x80 => Length::Definite(short as usize),
        long => {
            let n = (long & 0x7f) as usize;
            let bytes = input.get(p..p + n).ok_or(BerError::Truncated(p))?;
            let mut len: u64 = 0;
            for &b in bytes {
                len = (len << 8) | u64::from(b);
                if len > u64::from(u32::MAX) {
                    return Err(BerError::LengthTooLong(p - 1));
                }
            }
            p += n;
            // In range of u32 (checked above), so it fits a usize here.
            Length::Definite(usize::try_from(len).map_err(|_| BerError::LengthTooLong(p))?)
        }
    };
    if let Length::Definite(len) = length {
        if input.len() - p < len {
            return Err(BerError::Truncated(p));
        }
    }
    Ok(Header {
        tag,
        constructed,
        length,
        content_start: p,
    })
}

/// Whether a universal tag number is one of the string types that BER lets
/// be constructed (X.690 §8.6, §8.7, §8.23): BIT STRING, OCTET STRING and
/// the restricted character strings (UTF8String, NumericString to
/// UniversalString, BMPString; the times are VisibleStrings).
fn is_string_type(tag: &[u8]) -> bool {
    match tag {
        [t] if t & 0xc0 == 0 => matches!(t & 0x1f, 3 | 4 | 12 | 18..=28 | 30),
        _ => false,
    }
}

/// Convert the value at `pos` into `out`; return where it ended.
fn convert(input: &[u8], pos: usize, depth: usize, out: &mut Vec<u8>) -> Result<usize, BerError> {
    if depth > MAX_DEPTH {
        return Err(BerError::TooDeep);
    }
    let h = header(input, pos)?;
    if h.tag == [0] {
        return Err(BerError::UnexpectedEoc(pos));
    }
    if !h.constructed {
        let Length::Definite(len) = h.length else {
            return Err(BerError::IndefinitePrimitive(pos));
        };
        let end = h.content_start + len;
        write_tlv(out, h.tag, &input[h.content_start..end]);
        return Ok(end);
    }
    let mut content = Vec::new();
    if !is_string_type(h.tag) {
        let end = children(input, &h, depth, &mut content)?;
        write_tlv(out, h.tag, &content);
        return Ok(end);
    }
    let number = h.tag[0] & 0x1f;
    let mut unused = None;
    let end = segments(input, &h, number, depth, &mut content, &mut unused)?;
    if number == BIT_STRING {
        content.insert(0, unused.unwrap_or(0));
    }
    write_tlv(out, &[h.tag[0] & !CONSTRUCTED], &content);
    Ok(end)
}

/// Convert the elements of a constructed value, up to its definite end or
/// its end-of-contents marker; return where the value ended.
fn children(
    input: &[u8],
    h: &Header<'_>,
    depth: usize,
    out: &mut Vec<u8>,
) -> Result<usize, BerError> {
    let mut pos = h.content_start;
    match h.length {
        Length::Definite(len) => {
            let end = h.content_start + len;
            while pos < end {
                // A definite value's elements must end inside it.
                pos = convert(&input[..end], pos, depth + 1, out)?;
            }
            Ok(end)
        }
        Length::Indefinite => loop {
            if input.get(pos..pos + 2) == Some(&[0, 0]) {
                return Ok(pos + 2);
            }
            pos = convert(input, pos, depth + 1, out)?;
        },
    }
}

/// Join the segments of a constructed string of universal type `number`
/// (segments may themselves be constructed); return where it ended. For a
/// BIT STRING, `unused` gets the last segment's unused-bit count and only
/// the last may have any.
fn segments(
    input: &[u8],
    h: &Header<'_>,
    number: u8,
    depth: usize,
    out: &mut Vec<u8>,
    unused: &mut Option<u8>,
) -> Result<usize, BerError> {
    if depth > MAX_DEPTH {
        return Err(BerError::TooDeep);
    }
    let (limit, definite_end) = match h.length {
        Length::Definite(len) => (h.content_start + len, Some(h.content_start + len)),
        Length::Indefinite => (input.len(), None),
    };
    let input = &input[..limit];
    let mut pos = h.content_start;
    loop {
        match definite_end {
            Some(end) if pos >= end => return Ok(end),
            None if input.get(pos..pos + 2) == Some(&[0, 0]) => return Ok(pos + 2),
            _ => {}
        }
        let s = header(input, pos)?;
        if !is_segment_of(s.tag, number) {
            return Err(BerError::BadSegment(pos));
        }
        if s.constructed {
            pos = segments(input, &s, number, depth + 1, out, unused)?;
            continue;
        }
        let Length::Definite(len) = s.length else {
            return Err(BerError::IndefinitePrimitive(pos));
        };
        let bytes = &input[s.content_start..s.content_start + len];
        if number == BIT_STRING {
            if unused.is_some_and(|u| u != 0) {
                return Err(BerError::BadBitString(pos));
            }
            let (&u, rest) = bytes.split_first().ok_or(BerError::BadSegment(pos))?;
            *unused = Some(u);
            out.extend_from_slice(rest);
        } else {
            out.extend_from_slice(bytes);
        }
        pos = s.content_start + len;
    }
}

/// Whether `tag` may be a segment of a constructed string of universal type
/// `number`: a BIT STRING's segments are BIT STRINGs, every other string's
/// are OCTET STRINGs (X.690 §8.23.6: a character string is encoded as an
/// implicit OCTET STRING); segments of the string's own type are accepted
/// too, as some encoders write them.
fn is_segment_of(tag: &[u8], number: u8) -> bool {
    match tag {
        [t] if t & 0xc0 == 0 => {
            let n = t & 0x1f;
            n == number || (number != BIT_STRING && n == OCTET_STRING)
        }
        _ => false,
    }
}

/// Append a value with a DER (definite, minimal) length.
pub(crate) fn write_tlv(out: &mut Vec<u8>, tag: &[u8], content: &[u8]) {
    out.extend_from_slice(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}
