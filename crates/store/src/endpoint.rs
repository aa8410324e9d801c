//! Checks of the S3 settings that end up in a request's URL or headers: the endpoint, the
//! region and the access key id.
//!
//! `object_store` builds every request from them and unwraps what it parses (a URL without a
//! scheme, a port above 65535 or a stray space panics on the first request), so these are
//! checked before a store is built, against a grammar narrower than both URL parsers it goes
//! through: `http://HOST[:PORT]` or `https://HOST[:PORT]`, optionally ending in `/`, HOST a
//! DNS name, a dotted IPv4 address or a bracketed IPv6 address.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The form an endpoint must have, for messages.
pub(crate) const ENDPOINT_FORM: &str = "expected http://HOST:PORT or https://HOST[:PORT]";

/// Why `value` is not a usable endpoint, in words that name the value and the expected form.
pub(crate) fn check_endpoint(value: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{value:?} {why}; {ENDPOINT_FORM}"));
    if value.is_empty() {
        return Err(format!("is empty; {ENDPOINT_FORM}"));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("holds a space or a control character");
    }
    let Some((scheme, rest)) = value.split_once("://") else {
        return bad("has no scheme");
    };
    if scheme != "http" && scheme != "https" {
        return bad(&format!("has scheme {scheme:?}, not http or https"));
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return bad(
            "has a path, query or fragment; the endpoint is only the server (the bucket and \
             prefix go in the vault location, s3://BUCKET/PREFIX)",
        );
    }
    if authority.contains('@') {
        return bad("holds a user name; credentials go in access-key-id and secret-access-key");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((address, after)) = v6.split_once(']') else {
            return bad("has an IPv6 address without its closing ']'");
        };
        if address.parse::<Ipv6Addr>().is_err() {
            return bad(&format!("has {address:?}, not an IPv6 address"));
        }
        match after {
            "" => (address, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (address, Some(port)),
                None => return bad("has text after the IPv6 address"),
            },
        }
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if let Err(why) = check_host(host) {
            return bad(&why);
        }
        (host, port)
    };
    debug_assert!(!host.is_empty());
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return bad(&format!("has port {port:?}, not a number from 1 to 65535")),
        }
    }
    Ok(())
}

/// A DNS name or a dotted IPv4 address.
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("has no host".to_owned());
    }
    if host.len() > 253 {
        return Err("has a host name longer than 253 characters".to_owned());
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let labels: Vec<&str> = name.split('.').collect();
    let valid = labels.iter().all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    if !valid {
        return Err(format!(
            "has host {host:?}: a host name holds only letters, digits, '-', '_' and '.'"
        ));
    }
    // URL parsers read a name whose last label is a number as an IPv4 address (in forms such
    // as `127.1` or `0x7f.1`): only the plain dotted form is taken.
    let last = labels.last().copied().unwrap_or_default();
    let numeric = last.bytes().all(|b| b.is_ascii_digit())
        || last.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("0x"));
    if numeric && name.parse::<Ipv4Addr>().is_err() {
        return Err(format!("has host {host:?}, not an IPv4 address a.b.c.d"));
    }
    Ok(())
}

/// Why `value` is not a usable region: it goes into the signature's header and, without an
/// endpoint, into the host name of AWS S3.
pub(crate) fn check_region(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a region name (letters, digits, '-' and '_', such as us-east-1 \
             or garage)"
        ))
    }
}

/// Why `value` is not a usable access key id: it goes into the signature's header.
pub(crate) fn check_key_id(value: &str) -> Result<(), String> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        // Not echoed whole: a secret pasted here by mistake should not reach a log.
        Err(format!(
            "the access key id ({} characters) is empty or holds a space, a control or a \
             non-ASCII character",
            value.chars().count()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_of_the_expected_form_pass() {
        for good in [
            "http://127.0.0.1:3900",
            "http://127.0.0.1:3900/",
            "https://s3.example.net",
            "https://s3.example.net:9000",
            "http://[::1]:3900",
            "https://[2001:db8::1]",
            "http://minio_1:9000",
            "http://localhost:1",
        ] {
            assert_eq!(check_endpoint(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn malformed_endpoints_are_named_with_the_expected_form() {
        for (bad, why) in [
            ("127.0.0.1:3900", "no scheme"),
            ("http://127.0.0.1:99999", "port \"99999\""),
            ("http://127.0.0.1:0", "port \"0\""),
            ("http://127.0.0.1:", "port \"\""),
            ("http://127.0.0.1:+80", "port \"+80\""),
            ("http://[::1", "closing ']'"),
            ("http://[::1]x", "after the IPv6"),
            ("http://[zz]:1", "not an IPv6"),
            ("", "is empty"),
            ("ftp://host", "scheme \"ftp\""),
            ("HTTP://host", "scheme \"HTTP\""),
            ("http://host:1/path", "path"),
            ("http://host:1?q=1", "query"),
            ("http://host:1/#x", "fragment"),
            (" http://127.0.0.1:3900", "space"),
            ("http://127.0.0.1:3900\n", "control"),
            ("http://u:p@host", "user name"),
            ("http://", "no host"),
            ("http://:80", "no host"),
            ("http://999.1.1.1:80", "not an IPv4"),
            ("http://127.1:80", "not an IPv4"),
            ("http://0x7f.1", "not an IPv4"),
            ("http://a..b", "host"),
            ("http://-a.b", "host"),
            ("http://a%20b", "host"),
            ("http://hôst", "host"),
        ] {
            let err = check_endpoint(bad).expect_err(bad);
            assert!(
                err.contains(why) && err.contains(ENDPOINT_FORM),
                "{bad:?}: {err}"
            );
            if !bad.is_empty() {
                assert!(err.contains(&format!("{bad:?}")), "{bad:?}: {err}");
            }
        }
    }

    #[test]
    fn regions_and_key_ids_that_break_a_header_are_refused() {
        assert_eq!(check_region("us-east-1"), Ok(()));
        assert_eq!(check_region("garage"), Ok(()));
        for bad in ["", "us east", "eu\n", "a/b", "région"] {
            assert!(check_region(bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_key_id("GK31c2f218a2e44f485b94239e"), Ok(()));
        for bad in ["", "GK1\n", "GK 1", "clé"] {
            let err = check_key_id(bad).expect_err(bad);
            assert!(bad.is_empty() || !err.contains(bad), "{err}");
        }
    }
}
