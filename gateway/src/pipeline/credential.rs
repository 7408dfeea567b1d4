//! Which request headers are credentials, so that they never travel past
//! the verifier: not to destinations, not into the store, not into admin
//! output.
//!
//! A provider's signature or shared token authenticates the request to
//! *us*. Forwarding it hands a destination (and anyone who can read the
//! store or the admin API) what it needs to forge requests, and with
//! GitLab's `X-Gitlab-Token` it *is* the secret. A header is a credential
//! when the verifier says it consumed it (WIT 0.2), when it is on the list
//! of known provider headers below, or when its name says so; a route keeps
//! one only by naming it in `keep_headers`.

/// Credential headers of the providers hookgate knows, plus HTTP's own.
/// Names that [`name_says_credential`] already catches are not repeated.
const KNOWN: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    // Trello signs with HMAC-SHA1 under this name.
    "x-trello-webhook",
    // Kaizala's callback token.
    "kz-callback-token",
];

/// Parts of a header name that mark a credential whatever the provider:
/// `X-Hub-Signature-256`, `Stripe-Signature`, `X-Gitlab-Token`,
/// `X-Shopify-Hmac-Sha256`, `X-Api-Key`, a custom `X-Webhook-Secret`.
/// Over-matching costs a destination a header it can ask for back with
/// `keep_headers`; under-matching leaks a secret.
const CREDENTIAL_WORDS: &[&str] = &[
    "signature",
    "token",
    "secret",
    "hmac",
    "password",
    "api-key",
    "apikey",
    "auth",
    "credential",
    "session",
];

/// For each byte, the [`CREDENTIAL_WORDS`] that start with it (bit `i` for
/// word `i`).
const FIRST_BYTES: [u16; 256] = {
    assert!(CREDENTIAL_WORDS.len() <= 16, "one bit per word in a u16");
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < CREDENTIAL_WORDS.len() {
        table[CREDENTIAL_WORDS[i].as_bytes()[0] as usize] |= 1 << i;
        i += 1;
    }
    table
};

/// Whether `name` (lowercase) looks like a credential by its name alone.
/// One pass over the name; at each byte only the words that start with it
/// are tried (a table look-up, none for most bytes). This runs for every
/// header of every webhook, twice (what is stored, what is forwarded):
/// trying all ten words at every byte was 2 % of the runtime worker's time
/// with GitHub's ten headers.
fn name_says_credential(name: &str) -> bool {
    let bytes = name.as_bytes();
    (0..bytes.len()).any(|i| {
        let mut words = FIRST_BYTES[bytes[i] as usize];
        while words != 0 {
            let w = words.trailing_zeros() as usize;
            words &= words - 1;
            if bytes[i..].starts_with(CREDENTIAL_WORDS[w].as_bytes()) {
                return true;
            }
        }
        false
    })
}

/// Whether header `name` (lowercase) is a credential when the verifier
/// reported `consumed` (lowercase names).
pub fn is_credential(name: &str, consumed: &[String]) -> bool {
    KNOWN.contains(&name) || name_says_credential(name) || consumed.iter().any(|c| c == name)
}

/// The text shown instead of a credential's value.
pub const REDACTED: &str = "[redacted]";

/// Replaces the value of every credential header with [`REDACTED`] (the
/// verifier's `consumed` ones included), for what is kept or shown: the
/// inbound request in the store, the admin API. Even a header a route chose
/// to keep for its destination is redacted there.
pub fn redact(headers: &mut [(String, String)], consumed: &[String]) {
    for (name, value) in headers {
        // Names from `http` are lowercase already; a plugin's may not be.
        let lower = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(name.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(name.as_str())
        };
        if is_credential(&lower, consumed) {
            *value = REDACTED.to_owned();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_signature_and_token_headers_are_credentials() {
        for name in [
            "x-gitlab-token",
            "x-hub-signature-256",
            "x-hub-signature",
            "stripe-signature",
            "x-slack-signature",
            "webhook-signature",
            "svix-signature",
            "x-shopify-hmac-sha256",
            "x-twilio-signature",
            "x-zendesk-webhook-signature",
            "x-dropbox-signature",
            "x-trello-webhook",
            "authorization",
            "cookie",
            "x-api-key",
        ] {
            assert!(is_credential(name, &[]), "{name}");
        }
    }

    #[test]
    fn event_and_id_headers_are_not_credentials() {
        for name in [
            "content-type",
            "x-github-event",
            "x-github-delivery",
            "x-gitlab-event",
            "webhook-id",
            "user-agent",
        ] {
            assert!(!is_credential(name, &[]), "{name}");
        }
    }

    proptest::proptest! {
        /// The one-pass scan finds a word exactly where `str::contains`
        /// does, overlapping prefixes (`sesssion`, `autauth`) included.
        #[test]
        fn the_scan_agrees_with_contains(name in "(sig|signature|sess|ses|session|aut|auth|tok|token|api-|api-key|apikey|key|hm|hmac|pass|password|cred|credential|sec|secret|[a-z0-9-]){0,12}") {
            let naive = CREDENTIAL_WORDS.iter().any(|w| name.contains(w));
            proptest::prop_assert_eq!(name_says_credential(&name), naive);
        }
    }

    #[test]
    fn a_header_the_verifier_consumed_is_a_credential() {
        assert!(is_credential("x-custom", &["x-custom".to_owned()]));
    }

    #[test]
    fn redact_hides_values_but_keeps_names() {
        let mut h = vec![
            ("X-Gitlab-Token".to_owned(), "s3cret".to_owned()),
            ("x-gitlab-event".to_owned(), "Push Hook".to_owned()),
        ];
        redact(&mut h, &[]);
        assert_eq!(h[0], ("X-Gitlab-Token".to_owned(), REDACTED.to_owned()));
        assert_eq!(h[1].1, "Push Hook");
    }

    #[test]
    fn redact_hides_what_the_verifier_consumed_and_known_provider_headers() {
        let h = |k: &str| (k.to_owned(), "v".to_owned());
        let mut headers = vec![
            h("Authorization"),
            h("X-Hub-Signature-256"),
            h("x-gitlab-token"),
            h("kz-callback-token"),
            h("Cookie"),
            h("X-Shopify-Hmac-Sha256"),
            // Trello's signature: on the known list, its name says nothing.
            h("x-trello-webhook"),
            // A custom shared secret only the verifier knows to be one.
            h("x-our-pass"),
            h("content-type"),
            h("X-GitHub-Event"),
        ];
        redact(&mut headers, &["x-our-pass".to_owned()]);
        let kept: Vec<&str> = headers
            .iter()
            .filter(|(_, v)| v != REDACTED)
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(kept, ["content-type", "X-GitHub-Event"]);
    }
}
