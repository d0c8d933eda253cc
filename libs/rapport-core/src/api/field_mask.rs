//! Field masks of Update calls, the same in every service (AIP-134): the
//! mask names the top-level fields to change; an empty mask means every
//! field that is set in the request; `*` means every updatable field.
//! Whether a field "is set" follows proto3: a scalar that is not its
//! default, a non-empty list or map, a message that is present.

use prost::Message as _;
use prost_reflect::{DynamicMessage, FieldDescriptor, MessageDescriptor, ReflectMessage as _};
use prost_types::FieldMask;

use crate::error::Violations;

/// The fields an Update call changes. Paths outside `updatable` are
/// violations of `update_mask.paths[i]`.
pub fn paths<M>(
    mask: Option<&FieldMask>,
    patch: &M,
    updatable: &[&str],
    violations: &mut Violations,
) -> Vec<String>
where
    M: prost::Message + prost::Name,
{
    let requested: &[String] = mask.map_or(&[], |mask| &mask.paths);
    if requested.is_empty() {
        let patch = dynamic(patch);
        return updatable
            .iter()
            .filter(|name| field(patch.descriptor(), name).is_some_and(|f| patch.has_field(&f)))
            .map(|name| (*name).to_owned())
            .collect();
    }
    if requested == ["*"] {
        return updatable.iter().map(|name| (*name).to_owned()).collect();
    }
    for (i, path) in requested.iter().enumerate() {
        if !updatable.contains(&path.as_str()) {
            violations.add(
                format!("update_mask.paths[{i}]"),
                format!(
                    "{path:?} cannot be updated; updatable fields: {}",
                    updatable.join(", ")
                ),
            );
        }
    }
    requested.to_vec()
}

/// Copies the fields named by `paths` from `patch` into `target`; a field
/// not set in `patch` is cleared in `target`.
pub fn apply<M>(target: &mut M, patch: &M, paths: &[String])
where
    M: prost::Message + prost::Name + Default,
{
    let patch = dynamic(patch);
    let mut updated = dynamic(target);
    for path in paths {
        let Some(field) = field(patch.descriptor(), path) else {
            continue;
        };
        if patch.has_field(&field) {
            updated.set_field(&field, patch.get_field(&field).into_owned());
        } else {
            updated.clear_field(&field);
        }
    }
    *target = updated
        .transcode_to::<M>()
        .expect("a message of the same type transcodes");
}

fn field(descriptor: MessageDescriptor, name: &str) -> Option<FieldDescriptor> {
    descriptor.get_field_by_name(name)
}

/// `message` as a reflective message of its proto type.
fn dynamic<M: prost::Message + prost::Name>(message: &M) -> DynamicMessage {
    let descriptor = rapport_proto::descriptor_pool()
        .get_message_by_name(&M::full_name())
        .unwrap_or_else(|| panic!("{} is a Rapport message", M::full_name()));
    let mut dynamic = DynamicMessage::new(descriptor);
    dynamic
        .merge(message.encode_to_vec().as_slice())
        .expect("a message decodes as its own type");
    dynamic
}

#[cfg(test)]
mod tests {
    use rapport_proto::contacts::v1::Contact;

    use super::*;

    const UPDATABLE: &[&str] = &[
        "email",
        "first_name",
        "tags",
        "attributes",
        "lifecycle_stage",
    ];

    #[test]
    fn an_empty_mask_means_the_fields_set_in_the_request() {
        let patch = Contact {
            first_name: "Ana".into(),
            tags: vec!["vip".into()],
            id: "not updatable".into(),
            ..Default::default()
        };
        let mut violations = Violations::default();
        assert_eq!(
            paths(None, &patch, UPDATABLE, &mut violations),
            ["first_name", "tags"]
        );
        assert!(violations.is_empty());
    }

    #[test]
    fn a_star_means_every_updatable_field_and_unknown_paths_are_violations() {
        let mut violations = Violations::default();
        let star = FieldMask {
            paths: vec!["*".into()],
        };
        assert_eq!(
            paths(Some(&star), &Contact::default(), UPDATABLE, &mut violations),
            UPDATABLE
        );
        let bad = FieldMask {
            paths: vec!["email".into(), "id".into()],
        };
        paths(Some(&bad), &Contact::default(), UPDATABLE, &mut violations);
        assert_eq!(violations.fields(), ["update_mask.paths[1]"]);
    }

    #[test]
    fn apply_copies_named_fields_and_clears_those_unset_in_the_patch() {
        let mut target = Contact {
            email: "a@example.com".into(),
            first_name: "Ana".into(),
            tags: vec!["old".into()],
            ..Default::default()
        };
        let patch = Contact {
            first_name: "Bea".into(),
            ..Default::default()
        };
        apply(
            &mut target,
            &patch,
            &["first_name".to_owned(), "tags".to_owned()],
        );
        assert_eq!(target.first_name, "Bea");
        assert!(target.tags.is_empty());
        assert_eq!(target.email, "a@example.com");
    }
}
