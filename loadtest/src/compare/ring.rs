//! A consistent hashing ring with bounded loads and partitions, with the
//! semantics of github.com/buraksezer/consistent (`consistent.go`), the ring
//! the OpenTelemetry Target Allocator's `consistent-hashing` strategy uses.
//!
//! - Each member has `replication_factor` virtual nodes on a ring of u64
//!   hashes: `hasher(replica key)`, sorted ascending.
//! - Keys are not placed on the ring directly: a key belongs to partition
//!   `hasher(key) % partition_count`, and each partition has an owner.
//! - Owners are computed once per member set (`distributePartitions`): for
//!   partition `p` in order 0, 1, ..., hash the 8 little-endian bytes of `p`,
//!   find the first virtual node clockwise (`sort.Search` for the first
//!   hash >= it, wrapping to 0), and walk clockwise to the first member whose
//!   partition count + 1 <= the average load (`averageLoad`); give it the
//!   partition. No room anywhere: the Go code panics; here an error.
//! - Loads count partitions, not keys nor key weights.
//!
//! Two releases differ ([`RingVersion`]): v0.10.0 (used by the allocator
//! up to opentelemetry-operator v0.158.0) and v1.0.0 (operator main since
//! August 2026).

use std::collections::BTreeMap;

/// What differs between the releases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum RingVersion {
    /// Replica key `name + index` (`fmt.Sprintf("%s%d")`); average load
    /// `ceil(float64(partitions / members) * load)` with integer division;
    /// the bounded walk gives up after `len(ring) - 1` positions.
    V0_10,
    /// Replica key `index:name`; average load
    /// `ceil(partitions / members * load)` in floating point; the walk visits
    /// every position.
    V1_0,
}

/// The ring's knobs (`consistent.Config`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct RingConfig {
    pub partition_count: u64,
    pub replication_factor: usize,
    pub load: f64,
    pub version: RingVersion,
}

impl RingConfig {
    /// The allocator's config (`newConsistentHashingStrategy`):
    /// 1061 partitions, 5 replicas per member, load factor 1.1.
    pub fn otel_allocator(version: RingVersion) -> Self {
        RingConfig {
            partition_count: 1061,
            replication_factor: 5,
            load: 1.1,
            version,
        }
    }
}

/// A partition found no member with room.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RingError {
    #[error(
        "consistent ring: not enough room to distribute partition {partition} \
         ({members} members, average load {average_load})"
    )]
    NoRoom {
        partition: u64,
        members: usize,
        average_load: f64,
    },
    #[error("consistent ring: partition_count must be > 0")]
    NoPartitions,
}

/// The hash function (`consistent.Hasher.Sum64`).
pub type Hasher = fn(&[u8]) -> u64;

/// cespare/xxhash v2 `Sum64`: XXH64 with seed 0 (the allocator's hasher).
pub fn xxhash64(data: &[u8]) -> u64 {
    xxhash_rust::xxh64::xxh64(data, 0)
}

/// A built ring: members, their virtual nodes, and each partition's owner.
#[derive(Clone, Debug)]
pub struct Ring {
    config: RingConfig,
    hasher: Hasher,
    members: Vec<String>,
    /// Virtual node hashes, ascending (duplicates kept, as Go keeps them).
    sorted: Vec<u64>,
    /// Virtual node hash -> member index (a colliding later member wins).
    owners: BTreeMap<u64, usize>,
    /// Partition -> member index.
    partitions: Vec<usize>,
    /// Partitions per member.
    loads: Vec<u64>,
}

impl Ring {
    /// `consistent.New(members, config)`: with no member, every lookup
    /// answers `None`.
    pub fn new(members: &[String], config: RingConfig, hasher: Hasher) -> Result<Ring, RingError> {
        if config.partition_count == 0 {
            return Err(RingError::NoPartitions);
        }
        let mut ring = Ring {
            config,
            hasher,
            members: members.to_vec(),
            sorted: Vec::new(),
            owners: BTreeMap::new(),
            partitions: Vec::new(),
            loads: vec![0; members.len()],
        };
        for (m, name) in members.iter().enumerate() {
            for i in 0..config.replication_factor {
                let h = hasher(replica_key(config.version, name, i).as_bytes());
                ring.owners.insert(h, m);
                ring.sorted.push(h);
            }
        }
        ring.sorted.sort_unstable();
        if !members.is_empty() {
            ring.distribute()?;
        }
        Ok(ring)
    }

    /// `averageLoad`: the most partitions one member may own.
    pub fn average_load(&self) -> f64 {
        average_load(&self.config, self.members.len())
    }

    fn distribute(&mut self) -> Result<(), RingError> {
        let avg = self.average_load();
        let n = self.sorted.len();
        // v0.10 panics when `count >= len` before checking that position.
        let limit = match self.config.version {
            RingVersion::V0_10 => n.saturating_sub(1),
            RingVersion::V1_0 => n,
        };
        let mut partitions = Vec::with_capacity(self.config.partition_count as usize);
        let mut loads = vec![0u64; self.members.len()];
        for p in 0..self.config.partition_count {
            let key = (self.hasher)(&p.to_le_bytes());
            let mut idx = self.sorted.partition_point(|&h| h < key);
            if idx >= n {
                idx = 0;
            }
            let mut placed = None;
            for _ in 0..limit {
                let m = self.owners[&self.sorted[idx]];
                if (loads[m] + 1) as f64 <= avg {
                    placed = Some(m);
                    break;
                }
                idx += 1;
                if idx >= n {
                    idx = 0;
                }
            }
            let m = placed.ok_or(RingError::NoRoom {
                partition: p,
                members: self.members.len(),
                average_load: avg,
            })?;
            loads[m] += 1;
            partitions.push(m);
        }
        self.partitions = partitions;
        self.loads = loads;
        Ok(())
    }

    /// `FindPartitionID`.
    pub fn partition_of(&self, key: &[u8]) -> u64 {
        (self.hasher)(key) % self.config.partition_count
    }

    /// `LocateKey`: the index (into the members given to [`Ring::new`]) of
    /// the member owning `key`'s partition.
    pub fn locate(&self, key: &[u8]) -> Option<usize> {
        self.partitions
            .get(self.partition_of(key) as usize)
            .copied()
    }

    /// The owner of partition `p`.
    pub fn partition_owner(&self, p: u64) -> Option<usize> {
        self.partitions.get(p as usize).copied()
    }

    /// Partitions per member, in member order (`LoadDistribution`).
    pub fn loads(&self) -> &[u64] {
        &self.loads
    }

    pub fn members(&self) -> &[String] {
        &self.members
    }
}

/// The replica (virtual node) key of member `name`'s `i`-th replica.
pub fn replica_key(version: RingVersion, name: &str, i: usize) -> String {
    match version {
        RingVersion::V0_10 => format!("{name}{i}"),
        RingVersion::V1_0 => format!("{i}:{name}"),
    }
}

/// `averageLoad` for `members` members.
pub fn average_load(config: &RingConfig, members: usize) -> f64 {
    if members == 0 {
        return 0.0;
    }
    let per_member = match config.version {
        RingVersion::V0_10 => (config.partition_count / members as u64) as f64,
        RingVersion::V1_0 => config.partition_count as f64 / members as f64,
    };
    (per_member * config.load).ceil()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-picked hashes: partition ids (8 bytes) and replica keys get
    /// fixed values, a key `k<n>` hashes to n.
    fn table(b: &[u8]) -> u64 {
        if let Ok(p) = <[u8; 8]>::try_from(b) {
            return [50, 60, 70, 450][u64::from_le_bytes(p) as usize % 4];
        }
        match b {
            b"0:a" | b"a0" => 100,
            b"1:a" | b"a1" => 200,
            b"0:b" | b"b0" => 300,
            b"1:b" | b"b1" => 400,
            _ => std::str::from_utf8(&b[1..]).unwrap().parse().unwrap(),
        }
    }

    fn cfg(version: RingVersion, partitions: u64, replicas: usize, load: f64) -> RingConfig {
        RingConfig {
            partition_count: partitions,
            replication_factor: replicas,
            load,
            version,
        }
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn bounded_load_walks_clockwise_past_full_members() {
        // Ring: 100 a, 200 a, 300 b, 400 b; average load ceil(4/2 * 1.0) = 2.
        // p0 (50) -> a; p1 (60) -> a; p2 (70): a full twice -> b;
        // p3 (450) wraps to 100: a full, a full -> b.
        for v in [RingVersion::V0_10, RingVersion::V1_0] {
            let ring = Ring::new(&names(&["a", "b"]), cfg(v, 4, 2, 1.0), table).unwrap();
            assert_eq!(ring.average_load(), 2.0);
            let owners: Vec<usize> = (0..4).map(|p| ring.partition_owner(p).unwrap()).collect();
            assert_eq!(owners, vec![0, 0, 1, 1], "{v:?}");
            assert_eq!(ring.loads(), &[2, 2]);
            // k5: partition 5 % 4 = 1 -> a; k6: partition 2 -> b.
            assert_eq!(ring.locate(b"k5"), Some(0));
            assert_eq!(ring.locate(b"k6"), Some(1));
        }
    }

    #[test]
    fn no_room_is_an_error_not_a_panic() {
        // ceil(4/2 * 0.5) = 1 partition per member: partition 2 finds none.
        let err = Ring::new(
            &names(&["a", "b"]),
            cfg(RingVersion::V1_0, 4, 2, 0.5),
            table,
        )
        .unwrap_err();
        assert!(
            matches!(err, RingError::NoRoom { partition: 2, .. }),
            "{err}"
        );
    }

    fn three(b: &[u8]) -> u64 {
        if let Ok(p) = <[u8; 8]>::try_from(b) {
            return [50, 150, 50][u64::from_le_bytes(p) as usize % 3];
        }
        match b {
            b"0:a" | b"a0" => 100,
            b"0:b" | b"b0" => 200,
            b"0:c" | b"c0" => 300,
            _ => 0,
        }
    }

    #[test]
    fn v0_10_gives_up_one_position_early_v1_does_not() {
        // a, b, c one replica each, one partition each. p2 starts at a:
        // a full, b full, c is the last position on the ring.
        let members = names(&["a", "b", "c"]);
        let ring = Ring::new(&members, cfg(RingVersion::V1_0, 3, 1, 1.0), three).unwrap();
        assert_eq!(ring.partition_owner(2), Some(2));
        let err = Ring::new(&members, cfg(RingVersion::V0_10, 3, 1, 1.0), three).unwrap_err();
        assert!(
            matches!(err, RingError::NoRoom { partition: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn replica_keys_and_average_load_follow_each_release() {
        assert_eq!(
            replica_key(RingVersion::V0_10, "otel-collector-1", 0),
            "otel-collector-10"
        );
        assert_eq!(
            replica_key(RingVersion::V1_0, "otel-collector-1", 0),
            "0:otel-collector-1"
        );
        let v0 = RingConfig::otel_allocator(RingVersion::V0_10);
        let v1 = RingConfig::otel_allocator(RingVersion::V1_0);
        // 1061 / 3: integer 353 * 1.1 = 388.3 -> 389; float 353.67 * 1.1 = 389.03 -> 390.
        assert_eq!(average_load(&v0, 3), 389.0);
        assert_eq!(average_load(&v1, 3), 390.0);
        // 1061 / 10: 106 * 1.1 = 116.6 -> 117; 106.1 * 1.1 = 116.71 -> 117.
        assert_eq!(average_load(&v0, 10), 117.0);
        assert_eq!(average_load(&v1, 10), 117.0);
        assert_eq!(average_load(&v1, 0), 0.0);
    }

    #[test]
    fn the_allocator_ring_owns_every_partition_within_the_bound() {
        for v in [RingVersion::V0_10, RingVersion::V1_0] {
            for n in [1, 2, 9, 10, 11, 32] {
                let members: Vec<String> = (0..n).map(|i| format!("otel-collector-{i}")).collect();
                let ring = Ring::new(&members, RingConfig::otel_allocator(v), xxhash64).unwrap();
                assert_eq!(ring.loads().iter().sum::<u64>(), 1061);
                let bound = ring.average_load() as u64;
                assert!(ring.loads().iter().all(|&l| l <= bound), "{v:?} n={n}");
                assert_eq!(
                    ring.locate(b"10.0.0.1:8080"),
                    ring.partition_owner(xxhash64(b"10.0.0.1:8080") % 1061)
                );
            }
        }
    }

    #[test]
    fn xxhash64_known_answers() {
        // The XXH64 reference vectors (seed 0), what cespare/xxhash Sum64 returns.
        assert_eq!(xxhash64(b""), 0xef46_db37_51d8_e999);
        assert_eq!(xxhash64(b"a"), 0xd24e_c4f1_a98c_6e5b);
        assert_eq!(xxhash64(b"abc"), 0x44bc_2cf5_ad77_0999);
    }
}
