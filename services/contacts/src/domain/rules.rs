//! Checks for single values: formats and lengths of what contacts store.

use std::str::FromStr as _;

use prost::Message as _;
use rapport_core::Violations;
use rapport_core::convert::struct_to_json;
use serde_json::{Map, Value as Json};

pub const MAX_NAME_LEN: usize = 256;
pub const MAX_EXTERNAL_ID_LEN: usize = 256;
pub const MAX_EMAIL_LEN: usize = 254;
pub const MAX_SOURCE_LEN: usize = 128;
pub const MAX_TAG_LEN: usize = 64;
pub const MAX_TAGS: usize = 100;
pub const MAX_EVENT_TYPE_LEN: usize = 128;
pub const MAX_CLIENT_EVENT_ID_LEN: usize = 128;
/// Largest custom attributes or event properties object, encoded.
pub const MAX_OBJECT_BYTES: usize = 16 * 1024;

/// A free-form object (custom attributes, event properties) as stored:
/// finite numbers, bounded nesting, at most 16 KiB. The size is taken from
/// the protobuf encoding, close to the JSON one and free to compute.
pub fn json_object(
    value: Option<&prost_types::Struct>,
    field: &str,
    violations: &mut Violations,
) -> Map<String, Json> {
    let Some(value) = value else {
        return Map::new();
    };
    if value.encoded_len() > MAX_OBJECT_BYTES {
        violations.add(field, "must be at most 16 KiB");
        return Map::new();
    }
    struct_to_json(value).unwrap_or_else(|e| {
        violations.add(field, e.to_string());
        Map::new()
    })
}

/// A pragmatic address check: one `@`, a non-empty local part, and a domain
/// of dot-separated labels. Deliverability is the campaigns' business.
pub fn check_email(email: &str) -> Result<(), &'static str> {
    if email.len() > MAX_EMAIL_LEN {
        return Err("must be at most 254 characters");
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err("must be an email address such as ana@example.com");
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.contains('@')
        && local.chars().all(|c| !c.is_whitespace() && !c.is_control());
    let domain_ok = domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    if local_ok && domain_ok {
        Ok(())
    } else {
        Err("must be an email address such as ana@example.com")
    }
}

/// E.164: `+`, a country code not starting with 0, at most 15 digits in all.
pub fn check_phone(phone: &str) -> Result<(), &'static str> {
    let digits = phone.strip_prefix('+').unwrap_or_default();
    let ok = (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(())
    } else {
        Err("must be an E.164 number such as +442071838750")
    }
}

/// The shape of a BCP 47 tag: a 2-3 or 5-8 letter language, then subtags of
/// 1-8 letters or digits (script, region, variants).
pub fn check_locale(locale: &str) -> Result<(), &'static str> {
    const MESSAGE: &str = "must be a BCP 47 language tag such as en-GB";
    let mut parts = locale.split('-');
    let language = parts.next().unwrap_or_default();
    let language_ok = matches!(language.len(), 2 | 3 | 5..=8)
        && language.bytes().all(|b| b.is_ascii_alphabetic());
    let rest_ok =
        parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    if language_ok && rest_ok && locale.len() <= 35 {
        Ok(())
    } else {
        Err(MESSAGE)
    }
}

/// A name from the IANA time zone database.
pub fn check_time_zone(zone: &str) -> Result<(), &'static str> {
    chrono_tz::Tz::from_str(zone)
        .map(|_| ())
        .map_err(|_| "must be an IANA time zone such as Europe/London")
}

pub fn check_tag(tag: &str) -> Result<(), &'static str> {
    if tag.is_empty() || tag.chars().count() > MAX_TAG_LEN {
        return Err("tags must be 1 to 64 characters");
    }
    if tag.trim() != tag || tag.chars().any(char::is_control) {
        return Err("tags must not have control characters or surrounding spaces");
    }
    Ok(())
}

/// Lower-case dot-separated words, such as `email.opened` or `order.placed`.
pub fn check_event_type(kind: &str) -> Result<(), &'static str> {
    let ok = !kind.is_empty()
        && kind.len() <= MAX_EVENT_TYPE_LEN
        && kind.split('.').all(|word| {
            !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err("must be lower-case dot-separated words such as order.placed (at most 128 characters)")
    }
}

/// Free text such as names and sources: bounded, without control characters.
pub fn check_text(text: &str, max_chars: usize) -> Result<(), String> {
    if text.chars().count() > max_chars {
        return Err(format!("must be at most {max_chars} characters"));
    }
    if text.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(())
}

/// An ISO 4217 code, upper-case.
pub fn check_currency(code: &str) -> Result<(), &'static str> {
    match iso_currency::Currency::from_code(code) {
        Some(_) => Ok(()),
        None => Err("must be an ISO 4217 currency code such as EUR"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in [
            "ana@example.com",
            "a.b+c@sub.example.co.uk",
            "ünï@exämple.de",
        ] {
            assert!(check_email(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ana",
            "@example.com",
            "ana@",
            "ana@example",
            "a b@example.com",
            "ana@-x.com",
            "ana@x..com",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn phones() {
        assert!(check_phone("+442071838750").is_ok());
        assert!(check_phone("+15").is_ok());
        for bad in ["442071838750", "+0123", "+1234567890123456", "+44 20", "+"] {
            assert!(check_phone(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn locales() {
        for ok in ["en", "en-GB", "zh-Hant-TW", "es-419", "sl-rozaj-biske"] {
            assert!(check_locale(ok).is_ok(), "{ok}");
        }
        for bad in ["", "e", "en_GB", "en-", "en-GB-waytoolongsubtag", "e1-GB"] {
            assert!(check_locale(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_zones() {
        assert!(check_time_zone("Europe/London").is_ok());
        assert!(check_time_zone("UTC").is_ok());
        assert!(check_time_zone("Mars/Olympus").is_err());
    }

    #[test]
    fn tags_event_types_and_currencies() {
        assert!(check_tag("vip").is_ok());
        assert!(check_tag(" vip").is_err());
        assert!(check_tag(&"x".repeat(65)).is_err());
        assert!(check_event_type("order.placed").is_ok());
        assert!(check_event_type("page_view").is_ok());
        assert!(check_event_type("Order.Placed").is_err());
        assert!(check_event_type("order..placed").is_err());
        assert!(check_currency("EUR").is_ok());
        assert!(check_currency("eur").is_err());
        assert!(check_currency("XYZ").is_err());
    }
}
