//! Keys on the data path (§15.5): the storage key a client sends, the CRC-64 hash that picks the
//! partition, and the header values derived from them.
//!
//! ```text
//!  storage key   u16 BE len(hash_key) | hash_key | sort_key        (no length for the sort key)
//!  key hash      crc64(hash_key), or crc64(sort_key) when the hash key is empty
//!  partition     key hash mod partition_count, taken unsigned
//!  thread_hash   app_id * 7919 + partition_index                    (v0 header, §15.4)
//! ```
//!
//! The CRC is Pegasus' own (`P:src/utils/crc.cpp`): reflected, polynomial `0x9A6C9329AC4BC9B5`
//! in reflected form, register preset to all ones and inverted at the end. It is not one of the
//! catalogued CRC-64 variants, so the table is built here from those parameters rather than taken
//! from a library preset.

use thiserror::Error;

pub use super::crc::{CRC64_POLY_REFLECTED, crc64, crc64_table_entry};

/// Why a key cannot be encoded or decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The storage key's length prefix holds only lengths below 0xFFFF.
    #[error("hash key of {0} bytes is too long (the limit is 65534)")]
    HashKeyTooLong(usize),
    /// A storage key shorter than its 2-byte prefix, or whose prefix runs past its end.
    #[error("storage key of {len} bytes announces a hash key of {hash_len} bytes")]
    Truncated { len: usize, hash_len: usize },
}

/// The storage key of (`hash_key`, `sort_key`) (`pegasus_generate_key`).
pub fn generate_key(hash_key: &[u8], sort_key: &[u8]) -> Result<Vec<u8>, KeyError> {
    let len = u16::try_from(hash_key.len())
        .ok()
        .filter(|&l| l != u16::MAX)
        .ok_or(KeyError::HashKeyTooLong(hash_key.len()))?;
    let mut key = Vec::with_capacity(2 + hash_key.len() + sort_key.len());
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(hash_key);
    key.extend_from_slice(sort_key);
    Ok(key)
}

/// The hash key and sort key of a storage key (`pegasus_restore_key`).
pub fn split_key(key: &[u8]) -> Result<(&[u8], &[u8]), KeyError> {
    let truncated = |hash_len| KeyError::Truncated {
        len: key.len(),
        hash_len,
    };
    if key.len() < 2 {
        return Err(truncated(0));
    }
    let hash_len = u16::from_be_bytes([key[0], key[1]]) as usize;
    let rest = &key[2..];
    if rest.len() < hash_len {
        return Err(truncated(hash_len));
    }
    Ok(rest.split_at(hash_len))
}

/// The hash of a storage key (`pegasus_key_hash`): the hash key's CRC, or the sort key's when the
/// hash key is empty. Used by get, set, del, ttl and the other single-key operations.
pub fn key_hash(key: &[u8]) -> Result<u64, KeyError> {
    let (hash_key, sort_key) = split_key(key)?;
    Ok(if hash_key.is_empty() {
        crc64(sort_key)
    } else {
        crc64(hash_key)
    })
}

/// The hash of a hash key (`pegasus_hash_key_hash`), used by the operations addressed by a hash
/// key alone (multi_get, multi_set, multi_del, sortkey_count, check_and_set).
pub fn hash_key_hash(hash_key: &[u8]) -> u64 {
    crc64(hash_key)
}

/// The partition a hash falls in: `hash mod partition_count`, unsigned, as Java's
/// `remainder_unsigned` and Go's `%` on `uint64`. `None` for a count below 1.
pub fn partition_index(hash: u64, partition_count: i32) -> Option<i32> {
    let count = u64::try_from(partition_count).ok().filter(|&c| c > 0)?;
    // The remainder is below partition_count, which fits in an i32.
    Some((hash % count) as i32)
}

/// The `thread_hash` of a v0 header for a partition (`gpid::thread_hash`): `app_id * 7919 +
/// partition_index`, wrapping as the C++ int arithmetic would on overflow.
pub fn thread_hash(app_id: i32, partition_index: i32) -> i32 {
    app_id.wrapping_mul(7919).wrapping_add(partition_index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_key_layout() {
        assert_eq!(
            generate_key(b"h1", b"s1").expect("fits"),
            [0, 2, b'h', b'1', b's', b'1']
        );
        assert_eq!(generate_key(b"", b"").expect("fits"), [0, 0]);
        assert_eq!(
            split_key(&[0, 2, b'h', b'1', b's']).expect("splits"),
            (&b"h1"[..], &b"s"[..])
        );
        assert!(split_key(&[0]).is_err());
        assert!(split_key(&[0, 3, b'h']).is_err());
        assert!(generate_key(&vec![0; 0xFFFF], b"").is_err());
        assert!(generate_key(&vec![0; 0xFFFE], b"").is_ok());
    }

    #[test]
    fn partition_index_is_unsigned() {
        assert_eq!(partition_index(u64::MAX, 8), Some(7));
        assert_eq!(partition_index(0xAAE1_FD17_E635_E4DA, 8), Some(2));
        assert_eq!(partition_index(5, 0), None);
        assert_eq!(partition_index(5, -4), None);
        assert_eq!(thread_hash(2, 2), 15840);
        assert_eq!(
            thread_hash(i32::MAX, 1),
            i32::MAX.wrapping_mul(7919).wrapping_add(1)
        );
    }
}
