//! The two CRCs of the protocol, both reflected (LSB-first), table-driven a byte at a time, with
//! all-ones initial value and final inversion:
//! - CRC-64 with Pegasus' polynomial (`dsn::utils::crc64_calc`), which hashes keys to
//!   partitions (§15.5);
//! - CRC-32C (Castagnoli), the checksums of the native header (§3.5).
//!
//! One table builder serves both: a 32-bit polynomial shifted through a 64-bit register never
//! sets a bit above the 32nd.

/// Pegasus' CRC-64 polynomial, reflected.
pub const CRC64_POLY_REFLECTED: u64 = 0x9A6C_9329_AC4B_C9B5;

/// The CRC-32C polynomial, reflected.
pub const CRC32C_POLY_REFLECTED: u64 = 0x82F6_3B78;

const CRC64_TABLE: [u64; 256] = reflected_table(CRC64_POLY_REFLECTED);
const CRC32C_TABLE: [u64; 256] = reflected_table(CRC32C_POLY_REFLECTED);

/// The byte-at-a-time table: entry `i` is `i` shifted through the register eight times.
const fn reflected_table(poly: u64) -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ poly
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

/// The CRC of `data` over `table`, in a register of the bits of `mask`.
fn reflected(table: &[u64; 256], mask: u64, data: &[u8]) -> u64 {
    let mut crc = mask;
    for &b in data {
        crc = table[((crc ^ u64::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc & mask
}

/// Entry `i` of the CRC-64 table, for checking against the values in §15.5.
pub fn crc64_table_entry(i: u8) -> u64 {
    CRC64_TABLE[i as usize]
}

/// Pegasus' CRC-64 of `data` (`dsn::utils::crc64_calc(data, len, 0)`).
pub fn crc64(data: &[u8]) -> u64 {
    reflected(&CRC64_TABLE, u64::MAX, data)
}

/// The CRC-32C of `data`, as the native header's `hdr_crc32` and `body_crc32` hold it.
pub fn crc32c(data: &[u8]) -> u32 {
    // The register holds 32 bits: the cast keeps all of them.
    reflected(&CRC32C_TABLE, u64::from(u32::MAX), data) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_values() {
        // The CRC of "123456789": CRC-32C's published check value (RFC 3720, B.4), and the
        // CRC-64 value of the protocol document (§15.5).
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        assert_eq!(crc64(b"123456789"), 0xAE8B_1486_0A79_9888);
        assert_eq!(crc64(b""), 0);
    }
}
