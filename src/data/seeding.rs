//! Deterministic randomness for the data pipeline: every random choice comes from a ChaCha stream
//! keyed by (seed, epoch[, index]), so results never depend on which thread ran what, or when.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Domain tags keep the shuffle stream and the per-sample streams independent.
const TAG_SHUFFLE: u64 = 0x5348_5546_464c_4521; // "SHUFFLE!"
const TAG_SAMPLE: u64 = 0x5341_4d50_4c45_2121; // "SAMPLE!!"

fn rng_from(words: [u64; 4]) -> ChaCha8Rng {
    let mut seed = [0u8; 32];
    for (chunk, w) in seed.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    ChaCha8Rng::from_seed(seed)
}

/// The RNG for the crop/flip draw of dataset item `index` in `epoch`.
pub fn sample_rng(seed: u64, epoch: u64, index: u64) -> ChaCha8Rng {
    rng_from([seed, epoch, index, TAG_SAMPLE])
}

/// The order in which an epoch visits the dataset: 0..n unchanged when `serial`, otherwise a
/// Fisher–Yates shuffle driven by ChaCha keyed by (seed, epoch).
pub fn epoch_order(n: usize, seed: u64, epoch: u64, serial: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if serial {
        return order;
    }
    let mut rng = rng_from([seed, epoch, 0, TAG_SHUFFLE]);
    for i in (1..n).rev() {
        let j = rng.gen_range(0..=i);
        order.swap(i, j);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let a = epoch_order(50, 7, 1, false);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(50, 7, 1, false));
        assert_ne!(a, epoch_order(50, 7, 2, false));
        assert_ne!(a, epoch_order(50, 8, 1, false));
        assert_eq!(epoch_order(5, 7, 1, true), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn sample_streams_differ_by_index() {
        let x: u64 = sample_rng(1, 1, 1).gen();
        let y: u64 = sample_rng(1, 1, 2).gen();
        assert_ne!(x, y);
        assert_eq!(x, sample_rng(1, 1, 1).gen::<u64>());
    }
}
