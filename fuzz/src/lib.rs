//! What the fuzz targets share: the oracle and the sealing of the stable mutation test
//! (`crates/core/tests/mutations/`), included from there, so that the fuzzer and the test
//! check the same properties.

#[path = "../../crates/core/tests/mutations/oracle.rs"]
pub mod oracle;
#[path = "../../crates/core/tests/mutations/seal.rs"]
pub mod seal;

/// Checks `data` as it is, then sealed again by `seal` (a fuzzer cannot find a checksum:
/// sealed, its mutations reach the checks behind the checksum), when that changes it.
pub fn as_is_and_sealed(data: &[u8], seal: impl Fn(&mut [u8]), check: impl Fn(&[u8])) {
    check(data);
    let mut sealed = data.to_vec();
    seal(&mut sealed);
    if sealed != data {
        check(&sealed);
    }
}
