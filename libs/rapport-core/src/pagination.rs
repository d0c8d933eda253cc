//! Page sizes and opaque page tokens (AIP-158).
//!
//! A token carries the position after the last item of a page and a
//! fingerprint of the request's filters, so a token cannot be replayed with
//! other filters. Tokens are not secret: row-level security still decides
//! what a caller can see.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};

use crate::error::Violations;

pub const DEFAULT_PAGE_SIZE: i64 = 100;
pub const MAX_PAGE_SIZE: i64 = 1000;
/// The most bytes of messages one page holds: a page ends early rather
/// than grow past it (it always holds at least one item).
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// The page size to use for a requested one: the default for 0, at most
/// [`MAX_PAGE_SIZE`]; negative sizes are a violation of `field`.
fn page_size(requested: i32, field: &str, violations: &mut Violations) -> i64 {
    match i64::from(requested) {
        0 => DEFAULT_PAGE_SIZE,
        size if size < 0 => {
            violations.add(field, "must not be negative");
            DEFAULT_PAGE_SIZE
        }
        size => size.min(MAX_PAGE_SIZE),
    }
}

/// The paging of one List call: how many items to return, where to start,
/// and the filters its tokens are bound to.
pub struct Page<C> {
    pub limit: i64,
    /// The position after which this page starts; `None` for the first.
    pub after: Option<C>,
    filter: Vec<u8>,
}

impl<C: Serialize + DeserializeOwned> Page<C> {
    /// Reads a request's `page_size` and `page_token`. `filters` is the
    /// request with both cleared: a token only continues the same query.
    pub fn read(
        page_size_requested: i32,
        page_token: &str,
        filters: &impl prost::Message,
        violations: &mut Violations,
    ) -> Self {
        let limit = page_size(page_size_requested, "page_size", violations);
        let filter = filters.encode_to_vec();
        let after = decode_token(page_token, &filter, "page_token", violations);
        Self {
            limit,
            after,
            filter,
        }
    }

    /// How many items to fetch: one more than the page, to know whether
    /// another page follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// Ends the page: `items` (fetched with [`Self::fetch`], each with its
    /// position) trimmed to the page size and to [`MAX_PAGE_BYTES`], and
    /// the next page's token, or "" on the last page.
    pub fn finish<M: prost::Message>(&self, mut items: Vec<(C, M)>) -> (Vec<M>, String) {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let mut bytes = 0;
        let within = items
            .iter()
            .take(limit)
            .position(|(_, message)| {
                bytes += message.encoded_len();
                bytes > MAX_PAGE_BYTES
            })
            .map_or(limit, |over| over.max(1));
        let token = if items.len() > within {
            items.truncate(within);
            items
                .last()
                .map(|(cursor, _)| encode_token(cursor, &self.filter))
                .unwrap_or_default()
        } else {
            String::new()
        };
        (
            items.into_iter().map(|(_, message)| message).collect(),
            token,
        )
    }
}

#[derive(Serialize, serde::Deserialize)]
struct Token<C> {
    /// Position after which the next page starts.
    after: C,
    /// First bytes of the SHA-256 of the filters the token was made for.
    filter: String,
}

fn fingerprint(filter: &[u8]) -> String {
    let digest = Sha256::digest(filter);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The token for the page that starts after `after`, under `filter`.
fn encode_token<C: Serialize>(after: &C, filter: &[u8]) -> String {
    let token = Token {
        after,
        filter: fingerprint(filter),
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).expect("cursor serializes"))
}

/// The position in `token` (`None` for the first page). A token that is not
/// ours, or was made for other filters, is a violation of `field`.
fn decode_token<C: DeserializeOwned>(
    token: &str,
    filter: &[u8],
    field: &str,
    violations: &mut Violations,
) -> Option<C> {
    if token.is_empty() {
        return None;
    }
    let decoded = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Token<C>>(&bytes).ok());
    match decoded {
        Some(token) if token.filter == fingerprint(filter) => Some(token.after),
        Some(_) => {
            violations.add(
                field,
                "was issued for different filters; start again without a token",
            );
            None
        }
        None => {
            violations.add(field, "is not a page token issued by this service");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn token_round_trips_under_the_same_filter() {
        let token = encode_token(&(42_i64, "x".to_owned()), b"tag=vip");
        let mut violations = Violations::default();
        let after: Option<(i64, String)> =
            decode_token(&token, b"tag=vip", "page_token", &mut violations);
        assert_eq!(after, Some((42, "x".to_owned())));
        assert!(violations.is_empty());
    }

    #[test]
    fn token_is_refused_under_other_filters_or_when_garbled() {
        let token = encode_token(&1_i64, b"tag=vip");
        let mut violations = Violations::default();
        assert_eq!(
            decode_token::<i64>(&token, b"tag=new", "page_token", &mut violations),
            None
        );
        assert_eq!(
            decode_token::<i64>("%%%", b"", "page_token", &mut violations),
            None
        );
        assert!(violations.check().is_err());
    }

    fn page(limit: i32) -> Page<i32> {
        let mut violations = Violations::default();
        Page::read(limit, "", &String::new(), &mut violations)
    }

    #[test]
    fn a_page_trims_the_extra_item_and_its_token_continues_after_the_last() {
        let page = page(2);
        let items: Vec<(i32, String)> = (1..=3).map(|i| (i, i.to_string())).collect();
        let (messages, token) = page.finish(items);
        assert_eq!(messages, ["1", "2"]);
        let mut violations = Violations::default();
        assert_eq!(
            decode_token::<i32>(
                &token,
                &String::new().encode_to_vec(),
                "page_token",
                &mut violations
            ),
            Some(2)
        );
        let (last, token) = page.finish(vec![(1, "1".to_owned()), (2, "2".to_owned())]);
        assert_eq!(last.len(), 2);
        assert_eq!(token, "");
    }

    #[test]
    fn a_page_ends_before_its_bytes_pass_the_budget_but_holds_one_item() {
        let page = page(10);
        let big = "x".repeat(MAX_PAGE_BYTES / 2);
        let items: Vec<(i32, String)> = (1..=4).map(|i| (i, big.clone())).collect();
        let (messages, token) = page.finish(items);
        assert_eq!(messages.len(), 1, "two would pass the budget");
        assert!(!token.is_empty());
        let huge = "x".repeat(MAX_PAGE_BYTES * 2);
        let (messages, _) = page.finish(vec![(1, huge)]);
        assert_eq!(messages.len(), 1);
    }

    #[test]
    fn page_size_defaults_and_caps() {
        let mut violations = Violations::default();
        assert_eq!(
            page_size(0, "page_size", &mut violations),
            DEFAULT_PAGE_SIZE
        );
        assert_eq!(page_size(5000, "page_size", &mut violations), MAX_PAGE_SIZE);
        assert_eq!(page_size(7, "page_size", &mut violations), 7);
        assert!(violations.is_empty());
        page_size(-1, "page_size", &mut violations);
        assert!(!violations.is_empty());
    }
}
