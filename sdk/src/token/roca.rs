//! Detection of RSA moduli made by the flawed Infineon key generator (ROCA,
//! CVE-2017-15361, Nemec et al., CCS 2017).
//!
//! Such primes have the form `k * M + (65537^a mod M)` for a primorial `M`, so the modulus
//! `n`, reduced modulo each small prime `p` dividing `M`, always lies in the multiplicative
//! subgroup that 65537 generates modulo `p`. A random modulus does so for all the primes
//! below with negligible probability; a ROCA modulus always does. The test needs no
//! factoring: one pass over the modulus bytes per prime.

/// The small primes whose product is the primorial the flawed generator used.
const PRIMES: [u32; 38] = [
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97,
    101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
];

const GENERATOR: u32 = 65537;

/// True when the big-endian modulus `n` has the ROCA fingerprint.
pub(crate) fn has_fingerprint(n: &[u8]) -> bool {
    PRIMES.iter().all(|&p| {
        let residue = n.iter().fold(0u32, |r, &b| (r * 256 + u32::from(b)) % p);
        in_subgroup_of_generator(residue, p)
    })
}

/// Whether `residue` is a power of 65537 modulo the prime `p`.
fn in_subgroup_of_generator(residue: u32, p: u32) -> bool {
    let g = GENERATOR % p;
    let mut power = 1u32;
    // The subgroup has at most p - 1 elements; walk it once.
    for _ in 0..p {
        if power == residue {
            return true;
        }
        power = power * g % p;
        if power == 1 {
            break;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subgroup_walk_matches_definition() {
        // Modulo 7, 65537 = 3, a generator of the whole group {1..6}.
        assert!((1..7).all(|r| in_subgroup_of_generator(r, 7)));
        assert!(!in_subgroup_of_generator(0, 7));
        // Modulo 13, 65537 = 4, which generates {1, 4, 3, 12, 9, 10}.
        let members: Vec<u32> = (0..13)
            .filter(|&r| in_subgroup_of_generator(r, 13))
            .collect();
        assert_eq!(members, vec![1, 3, 4, 9, 10, 12]);
    }

    #[test]
    fn a_product_of_generator_powers_is_flagged() {
        // n = 65537^2 is congruent to a power of 65537 modulo every prime.
        let n = 65537u64 * 65537;
        assert!(has_fingerprint(&n.to_be_bytes()));
    }

    #[test]
    fn small_ordinary_numbers_are_not_flagged() {
        for n in [2u64 * 3 * 5 + 1, 1_000_003 * 999_983, 0xFFFF_FFFF_FFFF_FFC5] {
            assert!(!has_fingerprint(&n.to_be_bytes()), "{n}");
        }
    }
}
