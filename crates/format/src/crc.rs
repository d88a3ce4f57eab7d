//! CRC32C of concatenations from the CRCs of their parts.
//!
//! A segment's object CRC covers every byte before its trailer, and every chunk has its own
//! CRC: deriving the object's from the chunks' saves a second pass over megabytes. The
//! `crc32c` crate's own combine squares 32×32 matrices for every bit of the length (tens of
//! microseconds each); a segment of 1,000 partitions needs 1,000 combines, so that would cost
//! more than the pass it saves. This one multiplies by precomputed powers of x instead: about
//! log2(length) multiplications of 32 steps each.
//!
//! The arithmetic is in GF(2)[x] modulo the CRC32C (Castagnoli) polynomial, with bits
//! reflected as the CRC stores them: bit 31 holds x^0.

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;
/// x^0 in the reflected representation.
const ONE: u32 = 1 << 31;

/// `a * b mod POLY`.
const fn multiply(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    let mut bit = ONE;
    while bit != 0 {
        if a & bit != 0 {
            product ^= b;
        }
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
        bit >>= 1;
    }
    product
}

/// `POWERS[k]` is x^(2^k) mod POLY, for every k a length in bytes can reach (3 + 64 bits).
/// (The sequence does repeat, but with period 31 for this polynomial, not CRC-32's 32: a
/// table this long needs no such fact.)
const POWERS: [u32; 67] = {
    let mut table = [0u32; 67];
    table[0] = ONE >> 1; // x^1
    let mut k = 1;
    while k < table.len() {
        table[k] = multiply(table[k - 1], table[k - 1]);
        k += 1;
    }
    table
};

/// x^(8 * bytes) mod POLY: what appending `bytes` zero bytes multiplies a CRC state by.
fn shift_for(bytes: usize) -> u32 {
    let mut power = ONE;
    // A byte is 8 bits: start at x^(2^3).
    let mut k = 3;
    let mut remaining = bytes as u64;
    while remaining != 0 {
        if remaining & 1 != 0 {
            power = multiply(POWERS[k], power);
        }
        remaining >>= 1;
        k += 1;
    }
    power
}

/// The CRC32C of `a ++ b`, given `crc32c(a)`, `crc32c(b)` and `b.len()`.
pub fn crc32c_combine(crc_a: u32, crc_b: u32, len_b: usize) -> u32 {
    if len_b == 0 {
        return crc_a;
    }
    multiply(shift_for(len_b), crc_a) ^ crc_b
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn agrees_with_the_crc_of_the_concatenation_at_edges() {
        let data: Vec<u8> = (0..70_000u32).map(|i| (i * 31 + 7) as u8).collect();
        for split in [0, 1, 7, 8, 63, 64, 4096, 65_536, 69_999, 70_000] {
            let (a, b) = data.split_at(split);
            assert_eq!(
                crc32c_combine(crc32c::crc32c(a), crc32c::crc32c(b), b.len()),
                crc32c::crc32c(&data),
                "split at {split}"
            );
        }
    }

    #[test]
    fn agrees_with_the_crate_for_large_lengths() {
        // Lengths past 2^32 bytes exercise the table's wrap-around.
        for len in [1usize << 20, (1 << 32) + 5, usize::MAX / 3] {
            assert_eq!(
                crc32c_combine(0x1234_5678, 0x9abc_def0, len),
                crc32c::crc32c_combine(0x1234_5678, 0x9abc_def0, len),
                "length {len}"
            );
        }
    }

    proptest! {
        #[test]
        fn combining_parts_gives_the_whole(parts in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..8)) {
            let whole: Vec<u8> = parts.concat();
            let combined = parts
                .iter()
                .fold(0u32, |crc, part| crc32c_combine(crc, crc32c::crc32c(part), part.len()));
            prop_assert_eq!(combined, crc32c::crc32c(&whole));
        }
    }
}
