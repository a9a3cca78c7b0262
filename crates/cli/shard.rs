//! `--shard I/N`: a deterministic subset of the inputs, so that N workers (a
//! Slurm array, a Kubernetes Indexed Job) split one dataset with no overlap
//! and no gap.
//!
//! An image belongs to shard `hash(key) mod N`, where the key is its path
//! relative to the directory (or glob prefix) it was found under. The hash
//! is 64-bit FNV-1a followed by the SplitMix64 finalizer: both are fixed,
//! published algorithms, so every build on every machine agrees. (std's
//! `DefaultHasher` makes no such promise.)

use std::fmt;
use std::str::FromStr;

/// One worker's share of the inputs: shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u64,
    count: u64,
}

/// Why a `--shard` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--shard '{value}': {reason} (expected I/N with 0 <= I < N, e.g. 0/4)")]
pub struct ShardError {
    value: String,
    reason: &'static str,
}

impl Shard {
    /// Whether the image with this key is in the shard.
    #[must_use]
    pub fn contains(&self, key: &str) -> bool {
        stable_hash(key.as_bytes()) % self.count == self.index
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let error = |reason| ShardError {
            value: value.to_owned(),
            reason,
        };
        let (index, count) = value.split_once('/').ok_or_else(|| error("no '/'"))?;
        let index: u64 = index
            .trim()
            .parse()
            .map_err(|_| error("I is not a whole number"))?;
        let count: u64 = count
            .trim()
            .parse()
            .map_err(|_| error("N is not a whole number"))?;
        if count == 0 {
            return Err(error("N must be at least 1"));
        }
        if index >= count {
            return Err(error("I must be less than N (shards count from 0)"));
        }
        Ok(Self { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// FNV-1a (64-bit) of the bytes, then SplitMix64's finalizer so that the low
/// bits, which `mod N` keeps, depend on every input byte.
#[must_use]
pub fn stable_hash(bytes: &[u8]) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = FNV_OFFSET;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_pinned() {
        // Changing these values would re-split every sharded dataset.
        // (An independent Python implementation gives the same values.)
        assert_eq!(stable_hash(b""), 0xf52a_15e9_a9b5_e89b);
        assert_eq!(stable_hash(b"a/b.jpg"), 0x0971_e0ef_90a7_6a5d);
        assert_eq!(stable_hash(b"photos/00001.jpg"), 0xd7bd_736d_3007_d0c8);
    }

    #[test]
    fn every_key_is_in_exactly_one_shard_and_shards_are_balanced() {
        let shards: Vec<Shard> = (0..4).map(|i| format!("{i}/4").parse().unwrap()).collect();
        let mut sizes = [0usize; 4];
        for n in 0..4000 {
            let key = format!("photos/{n:05}.jpg");
            let owners: Vec<usize> = (0..4).filter(|&i| shards[i].contains(&key)).collect();
            assert_eq!(owners.len(), 1, "{key}");
            sizes[owners[0]] += 1;
        }
        for size in sizes {
            assert!((850..=1150).contains(&size), "{sizes:?}");
        }
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        for (value, reason) in [
            ("3", "no '/'"),
            ("4/4", "less than N"),
            ("0/0", "at least 1"),
            ("a/4", "I is not"),
            ("1/-2", "N is not"),
        ] {
            let err = value.parse::<Shard>().unwrap_err().to_string();
            assert!(err.contains(reason) && err.contains(value), "{err}");
        }
        assert_eq!("2/8".parse::<Shard>().unwrap().to_string(), "2/8");
        assert!("0/1".parse::<Shard>().unwrap().contains("anything"));
    }
}
