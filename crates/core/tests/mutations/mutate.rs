//! The mutations, blind to format but told where its fields are: bit flips, byte overwrites,
//! fields set to boundary values, truncations, extensions, insertions, removals, and items
//! (ids, run headers) duplicated or swapped. Every mutation is logged, so that a failing case
//! can be read and replayed.

/// A small deterministic generator (splitmix64): the same seed, the same cases.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// True once in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A field of an encoding: `width` bytes at `at`, little endian (an id when 32 wide).
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub at: usize,
    pub width: usize,
}

impl Field {
    pub const fn new(at: usize, width: usize) -> Field {
        Field { at, width }
    }

    fn end(self) -> usize {
        self.at + self.width
    }
}

/// A value at an edge, for a field of `width` bytes in an encoding of `len` bytes: 0, 1, the
/// largest, the sign bit, lengths as long as the buffer or longer, and the sizes the formats
/// are built of.
pub fn boundary(rng: &mut Rng, width: usize, len: usize) -> u64 {
    let max = if width >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * width)) - 1
    };
    let len = len as u64;
    let random = rng.next();
    let value = rng.pick(&[
        0,
        1,
        2,
        max,
        max - 1,
        max / 2,
        max / 2 + 1,
        len,
        len + 1,
        len.saturating_sub(1),
        len / 32,
        len / 32 + 1,
        len / 16 + 1,
        len * 8,
        16,
        32,
        48,
        96,
        255,
        256,
        64 << 10,
        (64 << 10) - 1,
        1 << 20,
        16 << 20,
        (16 << 20) + 1,
        1 << 31,
        1 << 32,
        1 << 40,
        1 << 53,
        random,
    ]);
    value & max
}

/// Writes `value` into `field` (little endian), as far as the field is in `bytes`.
pub fn overwrite(bytes: &mut [u8], field: Field, value: u64) {
    let le = value.to_le_bytes();
    for (k, byte) in bytes
        .iter_mut()
        .skip(field.at)
        .take(field.width)
        .enumerate()
    {
        *byte = le.get(k).copied().unwrap_or(0);
    }
}

/// Reads `field` (little endian, at most 8 bytes), 0 where it is past the end.
pub fn read(bytes: &[u8], field: Field) -> u64 {
    let mut le = [0u8; 8];
    for (k, byte) in bytes
        .iter()
        .skip(field.at)
        .take(field.width.min(8))
        .enumerate()
    {
        le[k] = *byte;
    }
    u64::from_le_bytes(le)
}

/// A place worth cutting or inserting at: a field's edge, the end, or anywhere.
fn place(rng: &mut Rng, bytes: &[u8], fields: &[Field]) -> usize {
    let len = bytes.len();
    let at = match rng.below(4) {
        0 if !fields.is_empty() => rng.pick(fields).at,
        1 if !fields.is_empty() => rng.pick(fields).end(),
        2 => len.saturating_sub(rng.pick(&[1, 16, 32, 33])),
        _ => rng.below(len + 1),
    };
    at.min(len)
}

/// Applies one mutation to `bytes`, whose fields are `fields`, and says what it did.
pub fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>, fields: &[Field]) -> String {
    let len = bytes.len();
    match rng.below(10) {
        0 if len > 0 => {
            let (at, bit) = (rng.below(len), rng.below(8));
            bytes[at] ^= 1 << bit;
            format!("flip bit {bit} of byte {at}")
        }
        1 if len > 0 => {
            let at = rng.below(len);
            let random = rng.next() as u8;
            bytes[at] = rng.pick(&[0, 1, 0x7f, 0x80, 0xff, random]);
            format!("set byte {at} to {}", bytes[at])
        }
        2 | 3 if !fields.is_empty() => {
            let field = rng.pick(fields);
            if field.width == 32 {
                let id = match rng.below(3) {
                    0 => [0u8; 32],
                    1 => [0xff; 32],
                    _ => rng.bytes(32).try_into().unwrap_or([1; 32]),
                };
                let end = field.end().min(len);
                let at = field.at.min(end);
                bytes[at..end].copy_from_slice(&id[..end - at]);
                return format!("set the id at {} to {:02x}..", field.at, id[0]);
            }
            let value = boundary(rng, field.width, len);
            overwrite(bytes, field, value);
            format!(
                "set the {}-byte field at {} to {value}",
                field.width, field.at
            )
        }
        4 if !fields.is_empty() => {
            let field = rng.pick(fields);
            let delta = rng.pick(&[1i64, -1, 2, -2, 32, -32]);
            let value = read(bytes, field).wrapping_add_signed(delta);
            overwrite(bytes, field, value);
            format!("add {delta} to the field at {}", field.at)
        }
        5 => {
            let keep = place(rng, bytes, fields);
            bytes.truncate(keep);
            format!("truncate to {keep}")
        }
        6 => {
            let n = rng.pick(&[1, 8, 16, 32, 33, 100]);
            let extra = match rng.below(3) {
                0 => vec![0; n],
                1 => rng.bytes(n),
                _ => bytes[len.saturating_sub(n)..].to_vec(),
            };
            bytes.extend_from_slice(&extra);
            format!("append {} bytes", extra.len())
        }
        7 => {
            let at = place(rng, bytes, fields);
            let n = rng.pick(&[1, 8, 16, 32]);
            let extra = if rng.one_in(2) {
                vec![0; n]
            } else {
                rng.bytes(n)
            };
            bytes.splice(at..at, extra);
            format!("insert {n} bytes at {at}")
        }
        8 => {
            let at = place(rng, bytes, fields);
            let end = (at + rng.pick(&[1, 8, 16, 32])).min(len);
            bytes.drain(at..end);
            format!("remove bytes {at}..{end}")
        }
        _ => {
            // An item (a run header, an id) twice, or two items swapped.
            let n = rng.pick(&[16, 32]);
            let wide: Vec<Field> = fields.iter().copied().filter(|f| f.width >= 8).collect();
            let from = if wide.is_empty() {
                rng.below(len)
            } else {
                rng.pick(&wide).at
            };
            if from + n > len {
                return "nothing (no item to copy)".to_owned();
            }
            let item = bytes[from..from + n].to_vec();
            if rng.one_in(2) {
                bytes.splice(from..from, item);
                return format!("repeat the {n} bytes at {from}");
            }
            let to = if wide.is_empty() {
                rng.below(len)
            } else {
                rng.pick(&wide).at
            };
            if to + n > len {
                return "nothing (no place to swap)".to_owned();
            }
            let other = bytes[to..to + n].to_vec();
            bytes[to..to + n].copy_from_slice(&item);
            bytes[from..from + n].copy_from_slice(&other);
            format!("swap the {n} bytes at {from} and {to}")
        }
    }
}
