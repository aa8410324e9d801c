//! The NBD client against replies made of random bytes: a fake server completes the handshake,
//! then answers a read with what a seeded generator makes, from noise to well-formed headers
//! with random fields, and closes. Whatever comes, the read ends in bounded time with a clear
//! error, and only the one well-formed reply among the cases is ever taken as data: no hang, no
//! panic, no garbage read as the disk. The same for a handshake answered at random.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use blockvault_source::BlockSource;

use crate::nbd_hostile::{
    CMD_DISC, DONE, ERROR, Fake, INIT_MAGIC, OFFSET_DATA, OPTS_MAGIC, REP_MAGIC, Request, SIMPLE,
    STRUCT, chunk_header, good_read, request,
};

/// A small deterministic generator (xorshift64*), so a failing case can be run again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// What the fake server answers a read with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Bytes with no structure at all.
    Noise,
    /// A structured chunk header with random flags, type, cookie and length, and a little
    /// payload.
    Chunk,
    /// A simple reply (not negotiated here) with a random error and cookie.
    Simple,
    /// A data chunk for the right request that is not the last, then noise.
    Unfinished,
    /// A data chunk whose offset or length does not fit the request.
    Misplaced,
    /// The one right answer.
    Right,
}

const KINDS: [Kind; 6] = [
    Kind::Noise,
    Kind::Chunk,
    Kind::Simple,
    Kind::Unfinished,
    Kind::Misplaced,
    Kind::Right,
];

fn reply(rng: &mut Rng, kind: Kind, r: &Request) -> Vec<u8> {
    let cookie = if rng.below(2) == 0 {
        r.cookie
    } else {
        rng.next()
    };
    match kind {
        Kind::Noise => {
            let n = rng.below(64) as usize;
            rng.bytes(n)
        }
        Kind::Chunk => {
            let kinds = [0, OFFSET_DATA, 2, 3, 5, ERROR, 0x8002, rng.next() as u16];
            let kind = kinds[rng.below(kinds.len() as u64) as usize];
            let length = match rng.below(3) {
                0 => rng.below(32) as u32,
                1 => rng.next() as u32,
                _ => u32::MAX,
            };
            let mut m = chunk_header(rng.next() as u16, kind, cookie, length);
            let n = (length as usize).min(rng.below(64) as usize);
            m.extend(rng.bytes(n));
            m
        }
        Kind::Simple => {
            let mut m = SIMPLE.to_be_bytes().to_vec();
            m.extend_from_slice(&(rng.below(4) as u32 * 5).to_be_bytes());
            m.extend_from_slice(&cookie.to_be_bytes());
            let n = rng.below(64) as usize;
            m.extend(rng.bytes(n));
            m
        }
        Kind::Unfinished => {
            let mut m = chunk_header(0, OFFSET_DATA, r.cookie, 8 + r.len);
            m.extend_from_slice(&r.offset.to_be_bytes());
            m.extend(std::iter::repeat_n(0x5a, r.len as usize));
            let n = rng.below(40) as usize;
            m.extend(rng.bytes(n));
            m
        }
        Kind::Misplaced => {
            let (offset, len) = match rng.below(3) {
                0 => (r.offset + 1 + rng.below(1 << 20), r.len),
                1 => (r.offset, r.len + 1 + rng.below(4096) as u32),
                _ => (r.offset.wrapping_sub(1 + rng.below(4096)), r.len),
            };
            let mut m = chunk_header(DONE, OFFSET_DATA, r.cookie, 8 + len);
            m.extend_from_slice(&offset.to_be_bytes());
            m.extend(std::iter::repeat_n(0x5a, len as usize));
            m
        }
        Kind::Right => good_read(r, 0x5a),
    }
}

#[test]
fn random_replies_end_in_a_clear_error_and_only_the_right_one_is_read() {
    let mut right = 0;
    for seed in 1..=600u64 {
        let kind = KINDS[(seed % KINDS.len() as u64) as usize];
        let fake = Fake::start(STRUCT, move |s| {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            while let Some(r) = request(s) {
                if r.command == CMD_DISC {
                    return;
                }
                let _ = s.write_all(&reply(&mut rng, kind, &r));
                if kind != Kind::Right {
                    // Closed right after: the client must not wait for what never comes.
                    return;
                }
            }
        });
        let source = fake
            .connect(Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("seed {seed}: the handshake was good: {e}"));
        let started = Instant::now();
        let mut buf = vec![0u8; 4096];
        let read = source.read_at(0, &mut buf);
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "seed {seed} ({kind:?}): {took:?}"
        );
        match (kind, read) {
            (Kind::Right, Ok(n)) => {
                assert_eq!(n, 4096, "seed {seed}");
                assert!(buf.iter().all(|&b| b == 0x5a), "seed {seed}: wrong bytes");
                right += 1;
            }
            (Kind::Right, Err(e)) => panic!("seed {seed}: a right reply refused: {e}"),
            (kind, Ok(_)) => panic!("seed {seed}: {kind:?} was read as data"),
            (kind, Err(e)) => {
                let text = e.to_string();
                assert!(text.len() > 20, "seed {seed} ({kind:?}): {text}");
                // A broken connection stays broken: the next read fails too, at once.
                let again = Instant::now();
                assert!(
                    source.read_at(0, &mut buf).is_err(),
                    "seed {seed} ({kind:?})"
                );
                assert!(again.elapsed() < Duration::from_secs(3), "seed {seed}");
            }
        }
        drop(source);
    }
    assert_eq!(right, 100, "every sixth case is the right reply");
}

/// The server's side of a handshake gone wrong, by `rng`: noise, a greeting with random
/// flags, or a right greeting whose option replies have random types, lengths and data.
fn random_handshake(rng: &mut Rng, s: &mut std::os::unix::net::UnixStream) {
    match rng.below(3) {
        0 => {
            let n = rng.below(80) as usize;
            let _ = s.write_all(&rng.bytes(n));
        }
        1 => {
            let mut m = INIT_MAGIC.to_be_bytes().to_vec();
            m.extend_from_slice(&OPTS_MAGIC.to_be_bytes());
            m.extend_from_slice(&(rng.next() as u16 & !3).to_be_bytes());
            let _ = s.write_all(&m);
        }
        _ => {
            let mut m = INIT_MAGIC.to_be_bytes().to_vec();
            m.extend_from_slice(&OPTS_MAGIC.to_be_bytes());
            m.extend_from_slice(&3u16.to_be_bytes());
            if s.write_all(&m).is_err() || s.read_exact(&mut [0u8; 4]).is_err() {
                return;
            }
            for _ in 0..4 {
                let mut head = [0u8; 16];
                if s.read_exact(&mut head).is_err() {
                    return;
                }
                let option = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
                let len = u32::from_be_bytes([head[12], head[13], head[14], head[15]]);
                if s.read_exact(&mut vec![0u8; len.min(1 << 16) as usize])
                    .is_err()
                {
                    return;
                }
                for _ in 0..=rng.below(3) {
                    let kinds = [1, 2, 3, 4, (1 << 31) | 1, rng.next() as u32];
                    let kind = kinds[rng.below(kinds.len() as u64) as usize];
                    let data = rng.below(24) as usize;
                    let mut r = REP_MAGIC.to_be_bytes().to_vec();
                    let option = if rng.below(4) == 0 {
                        rng.next() as u32
                    } else {
                        option
                    };
                    r.extend_from_slice(&option.to_be_bytes());
                    r.extend_from_slice(&kind.to_be_bytes());
                    let claimed = if rng.below(4) == 0 {
                        rng.next() as u32
                    } else {
                        data as u32
                    };
                    r.extend_from_slice(&claimed.to_be_bytes());
                    r.extend(rng.bytes(data));
                    let _ = s.write_all(&r);
                }
            }
        }
    }
}

#[test]
fn random_handshakes_end_in_a_clear_error_at_once() {
    for seed in 1..=300u64 {
        let fake = Fake::raw(move |s| {
            let mut rng = Rng(seed.wrapping_mul(0xd1b5_4a32_d192_ed03) | 1);
            random_handshake(&mut rng, s);
        });
        let started = Instant::now();
        let got = fake.connect(Duration::from_secs(2));
        let took = started.elapsed();
        assert!(took < Duration::from_secs(3), "seed {seed}: {took:?}");
        match got {
            Ok(source) => panic!("seed {seed}: a random handshake opened {:?}", source.info()),
            Err(e) => assert!(e.to_string().len() > 20, "seed {seed}: {e}"),
        }
    }
}
