//! One line for a failed request to an object store: what was asked (method and URL, without
//! its query), what came back (the HTTP status and the S3 error code and message, not the XML
//! body) or what stopped it in transit, and what to check.
//!
//! `object_store`'s own message repeats each cause inside the one above it and carries the
//! whole XML answer; printed with its sources it ran to 1.5 KB. Errors that are not HTTP
//! requests (a local directory's) keep their own message.

use std::error::Error as StdError;

use object_store::client::{HttpError, HttpErrorKind};

use crate::retry::OutOfBudget;

/// Longest S3 message kept, in characters.
const MESSAGE_MAX: usize = 100;

/// The message of [`crate::Error::Backend`]: `op key failed: error` when `error` is not an
/// HTTP request, else the request's own line (its URL names the bucket and key).
pub(crate) fn message(op: &str, key: &str, error: &object_store::Error) -> String {
    match summary(error) {
        Some(line) => line,
        None => format!("{op} {key} failed: {error}"),
    }
}

/// `error` in one line, when it is a failed HTTP request.
fn summary(error: &object_store::Error) -> Option<String> {
    let mut request = None;
    let mut answer = None;
    let mut transit = None;
    let mut budget = None;
    let mut innermost: &(dyn StdError + 'static) = error;
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        innermost = e;
        if let Some(b) = e.downcast_ref::<OutOfBudget>() {
            budget.get_or_insert(b);
        }
        if let Some(http) = e.downcast_ref::<HttpError>() {
            transit.get_or_insert(http.kind());
        }
        let text = e.to_string();
        if request.is_none()
            && let Some(rest) = text.strip_prefix("Error performing ")
        {
            let mut words = rest.split(' ');
            if let (Some(method), Some(uri)) = (words.next(), words.next()) {
                let uri = uri.split('?').next().unwrap_or(uri);
                request = Some(format!("{method} {uri}"));
            }
        }
        if answer.is_none() {
            if let Some(rest) = text.strip_prefix("Server returned non-2xx status code: ") {
                let (status, body) = rest.split_once(": ").unwrap_or((rest, ""));
                answer = Some((status.to_owned(), body.to_owned()));
            } else if let Some(body) = text.strip_prefix("Server returned error response: ") {
                answer = Some((String::new(), body.to_owned()));
            }
        }
        current = e.source();
    }
    let request = request?;
    let (what, hint) = match (&answer, transit) {
        (Some((status, body)), _) => answered(status, body),
        (None, Some(kind)) => {
            let what = match kind {
                HttpErrorKind::Connect => "could not connect",
                HttpErrorKind::Timeout => "timed out",
                _ => "failed in transit",
            };
            (
                format!("{what} ({})", without_os_error(&innermost.to_string())),
                "check the endpoint (AWS_ENDPOINT_URL, s3.toml) and that the server is up",
            )
        }
        (None, None) => (innermost.to_string(), CHECK_ALL),
    };
    let retried = budget.map_or(String::new(), |b| {
        format!(
            ", retried for {:.1?} (retry budget is {:?}: s3.toml's retry-budget-secs or \
             BLOCKVAULT_S3_RETRY_BUDGET_SECS)",
            b.elapsed, b.budget
        )
    });
    Some(format!("{request} {what}{retried}; {hint}"))
}

const CHECK_ALL: &str = "check the endpoint, the credentials and that the bucket exists";

/// What an answer with `status` and `body` says, and what to check.
fn answered(status: &str, body: &str) -> (String, &'static str) {
    let code = xml_tag(body, "Code");
    let message = xml_tag(body, "Message").map(|m| match m.char_indices().nth(MESSAGE_MAX) {
        Some((cut, _)) => format!("{}…", &m[..cut]),
        None => m.to_owned(),
    });
    let mut what = format!("answered {status}");
    if let Some(code) = code {
        what.push_str(&format!(", {code}"));
    }
    if let Some(message) = message {
        what.push_str(&format!(" ({message})"));
    } else if !body.trim().is_empty() && !body.trim_start().starts_with('<') {
        let short: String = body.trim().chars().take(MESSAGE_MAX).collect();
        what.push_str(&format!(" ({short})"));
    }
    let number = status.split(' ').next().unwrap_or_default();
    let hint = match code.unwrap_or_default() {
        "NoSuchBucket" => "check that the bucket exists (create it on the object store first)",
        "AccessDenied"
        | "InvalidAccessKeyId"
        | "SignatureDoesNotMatch"
        | "InvalidSecurity"
        | "InvalidToken"
        | "ExpiredToken" => CHECK_CREDENTIALS,
        "AuthorizationHeaderMalformed"
        | "PermanentRedirect"
        | "IllegalLocationConstraintException" => {
            "check the region (AWS_REGION or region in s3.toml) and the endpoint"
        }
        "RequestTimeTooSkewed" => "check this host's clock",
        _ => match number {
            "401" | "403" => CHECK_CREDENTIALS,
            "301" | "307" | "400" => "check the endpoint and the region",
            "404" => "check the bucket and the prefix",
            n if n.starts_with('5') => "the server is failing: check its health",
            _ => CHECK_ALL,
        },
    };
    (what, hint)
}

const CHECK_CREDENTIALS: &str = "check the key id and secret (AWS_ACCESS_KEY_ID, \
     AWS_SECRET_ACCESS_KEY, s3.toml) and the key's rights";

/// `text` without the `(os error 111)` that follows "Connection refused".
fn without_os_error(text: &str) -> &str {
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => &text[..at],
        _ => text,
    }
}

/// The text of the first `<tag>...</tag>` of `xml`.
fn xml_tag<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].trim()).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_and_message_of_an_s3_answer_are_kept_and_the_xml_dropped() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code>\
                    <Message>Forbidden: Invalid signature</Message><Resource>/b/k</Resource>\
                    </Error>";
        let (what, hint) = answered("403 Forbidden", body);
        assert_eq!(
            what,
            "answered 403 Forbidden, AccessDenied (Forbidden: Invalid signature)"
        );
        assert_eq!(hint, CHECK_CREDENTIALS);
        let (what, hint) = answered(
            "404 Not Found",
            "<Error><Code>NoSuchBucket</Code><Message>Bucket not found: x</Message></Error>",
        );
        assert!(what.contains("NoSuchBucket"), "{what}");
        assert!(hint.contains("bucket exists"), "{hint}");
        let (what, hint) = answered("502 Bad Gateway", "<html>proxy</html>");
        assert_eq!(what, "answered 502 Bad Gateway");
        assert!(hint.contains("server"), "{hint}");
    }

    #[test]
    fn errors_that_are_not_requests_keep_their_message() {
        let error = object_store::Error::NotSupported {
            source: "no such thing".into(),
        };
        assert_eq!(summary(&error), None);
        assert_eq!(
            message("get", "vault.config", &error),
            format!("get vault.config failed: {error}")
        );
    }
}
