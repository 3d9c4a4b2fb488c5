//! The Proxy-Wasm wire format for header maps:
//! `u32 count`, then `count` pairs of `(u32 name_len, u32 value_len)`, then each
//! name and value followed by a NUL byte. All integers little-endian.
use crate::host::HeaderPair;

/// Decodes a serialized map; `None` if the bytes are malformed.
pub fn decode(bytes: &[u8]) -> Option<Vec<HeaderPair>> {
    let read_u32 = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_le_bytes(b) as usize)
    };
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = read_u32(0)?;
    let mut sizes = 4usize;
    let mut data = 4usize.checked_add(count.checked_mul(8)?)?;
    let mut pairs = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let name_len = read_u32(sizes)?;
        let value_len = read_u32(sizes + 4)?;
        sizes += 8;
        let name = bytes.get(data..data.checked_add(name_len)?)?;
        data = data.checked_add(name_len + 1)?;
        let value = bytes.get(data..data.checked_add(value_len)?)?;
        data = data.checked_add(value_len + 1)?;
        pairs.push((String::from_utf8_lossy(name).into_owned(), value.to_vec()));
    }
    Some(pairs)
}

/// Encodes pairs in the wire format (for `proxy_send_local_response`).
pub fn encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a [u8])> + Clone) -> Vec<u8> {
    let entries: Vec<(&str, &[u8])> = pairs.into_iter().collect();
    let size = 4 + entries.iter().map(|(k, v)| 8 + k.len() + v.len() + 2).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (k, v) in &entries {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in &entries {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_order_duplicates_and_binary_values() {
        let pairs: Vec<(&str, &[u8])> = vec![(":status", b"200"), ("x-a", b"1"), ("x-a", b"\xff\x00z"), ("e", b"")];
        let decoded = decode(&encode(pairs.clone())).unwrap_or_default();
        let expected: Vec<HeaderPair> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect();
        assert_eq!(decoded, expected);
    }

    #[test]
    fn empty_and_truncated_inputs() {
        assert_eq!(decode(&[]), Some(vec![]));
        let bytes = encode(vec![("abc", &b"def"[..])]);
        for cut in 1..bytes.len() - 1 {
            assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
        }
        // A count that would overflow the size computation is rejected, not a panic.
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff]), None);
    }
}
