//! The VM the trials back up: two sparse disks written together, generation by generation.
//!
//! Before every backup the test writes a new generation: a marker block at the start of each
//! disk naming the generation, and a few changed blocks (now and then a larger rewrite or a
//! zeroed range). Nothing writes the disks while a command runs, so a point must restore to
//! exactly the generation that was on the disks when its backup started, and both disks of a
//! point must carry the same marker (the disks of one point come from one instant). The test
//! keeps the BLAKE3 of each disk at each generation, not the content, so a long run stays
//! small in memory.

use std::path::Path;

use crate::schedule::Rng;
use crate::support::{Image, KIB, MIB, noise, text};

pub const VM: &str = "crashvm";
/// The block size of both disks: small, so a backup has many chunks and many instants to be
/// killed at.
pub const BLOCK_SIZE: &str = "128KiB";
const BLOCK: usize = 128 * 1024;
/// The disks' file names (which are also the names restores give them), and sizes.
pub const DISKS: [(&str, u64); 2] = [("sys.img", 24 * MIB), ("data.img", 8 * MIB)];
const MARKER: usize = 4096;
const MAGIC: &str = "blockvault-crash generation ";

/// The two disks and the digest of each at every generation so far.
#[derive(Debug)]
pub struct Vm {
    disks: [Image; 2],
    /// Index: the generation.
    generations: Vec<[blake3::Hash; 2]>,
}

impl Vm {
    /// The disks in `dir` at generation 0: a few MiB of noise and text in each, holes elsewhere
    /// (some writes unaligned, one up to the end of the disk).
    pub fn create(dir: &Path) -> Vm {
        let [(sys, sys_size), (data, data_size)] = DISKS;
        let mut sys = Image::create(&dir.join(sys), sys_size);
        sys.write(64 * KIB, &noise(MIB, 11));
        sys.write(3 * MIB + 77, &text(512 * KIB, 12));
        sys.write(10 * MIB, &noise(2 * MIB, 13));
        sys.write(sys_size - 256 * KIB, &noise(256 * KIB, 14));
        let mut data = Image::create(&dir.join(data), data_size);
        data.write(MIB, &noise(512 * KIB, 15));
        data.write(5 * MIB + 3, &text(256 * KIB, 16));
        let mut vm = Vm {
            disks: [sys, data],
            generations: Vec::new(),
        };
        vm.seal();
        vm
    }

    pub fn paths(&self) -> [&Path; 2] {
        [&self.disks[0].path, &self.disks[1].path]
    }

    /// The generation on the disks now.
    pub fn generation(&self) -> u32 {
        self.generations.len() as u32 - 1
    }

    /// The first block of disk `disk` as it is now (its marker's block: a chunk of the newest
    /// generation alone).
    pub fn first_block(&self, disk: usize) -> &[u8] {
        &self.disks[disk].content()[..BLOCK]
    }

    /// The digests of both disks at `generation`.
    pub fn digests(&self, generation: u32) -> Option<&[blake3::Hash; 2]> {
        self.generations.get(generation as usize)
    }

    /// Writes the next generation, its changes drawn from `seed`; returns its number.
    pub fn churn(&mut self, seed: u64) -> u32 {
        let mut rng = Rng::new(seed);
        for (i, disk) in self.disks.iter_mut().enumerate() {
            // The data disk changes every other generation or so; the marker, always.
            let writes = match i {
                0 => 1 + rng.below(4),
                _ => rng.below(3),
            };
            let size = disk.content().len() as u64;
            for _ in 0..writes {
                let len = 4 * KIB + rng.below(192 * KIB);
                let at = MARKER as u64 + rng.below(size - len - MARKER as u64);
                disk.write(at, &noise(len, rng.next_u64()));
            }
            if rng.chance(0.1) {
                // A larger rewrite: a longer transfer to be killed in.
                let at = MARKER as u64 + rng.below(size - 2 * MIB - MARKER as u64);
                disk.write(at, &noise(2 * MIB, rng.next_u64()));
            }
            if rng.chance(0.1) {
                // Data deleted: blocks that held chunks become zero.
                let at = MARKER as u64 + rng.below(size - 128 * KIB - MARKER as u64);
                disk.write(at, &[0; 128 * KIB as usize]);
            }
        }
        self.seal()
    }

    /// Writes the markers of a new generation and records its digests.
    fn seal(&mut self) -> u32 {
        let generation = self.generations.len() as u32;
        for (i, disk) in self.disks.iter_mut().enumerate() {
            disk.write(0, &marker(generation, i));
        }
        self.generations.push([
            blake3::hash(self.disks[0].content()),
            blake3::hash(self.disks[1].content()),
        ]);
        generation
    }
}

/// The first block of disk `disk` at `generation`: the marker line, then noise unique to both,
/// so its chunk is new in every generation.
fn marker(generation: u32, disk: usize) -> Vec<u8> {
    let mut block = noise(MARKER as u64, (u64::from(generation) << 8) | disk as u64);
    let line = format!("{MAGIC}{generation:08} disk {disk}\n");
    block[..line.len()].copy_from_slice(line.as_bytes());
    block
}

/// The generation a restored disk's marker names, if it has one.
pub fn generation_of(image: &[u8]) -> Option<u32> {
    let line = image.get(..MAGIC.len() + 8)?;
    let digits = std::str::from_utf8(line).ok()?.strip_prefix(MAGIC)?;
    digits.parse().ok()
}

#[test]
fn the_marker_names_its_generation() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut vm = Vm::create(dir.path());
    assert_eq!(vm.generation(), 0);
    let first = vm.churn(3);
    assert_eq!(first, 1);
    for path in vm.paths() {
        let bytes = std::fs::read(path).expect("read disk");
        assert_eq!(generation_of(&bytes), Some(1));
    }
    assert_ne!(vm.digests(0), vm.digests(1));
    assert_eq!(generation_of(b"something else entirely, no marker"), None);
}
