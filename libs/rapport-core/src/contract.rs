//! What the proto contract says about each gRPC method, read once from the
//! descriptor pool rather than written per method: which service owns it,
//! the access it needs (methods marked `idempotency_level = NO_SIDE_EFFECTS`
//! need read access, all others write), whether it is public
//! (`(rapport.api.v1.public) = true`: no API key) and which field of a public
//! request names what it answers for (`(rapport.api.v1.rate_limit_key)`),
//! and its input message, whose fields carry their own caps
//! (`(rapport.api.v1.max_items)`).

use std::collections::HashMap;

use prost_reflect::{DescriptorPool, FieldDescriptor, MessageDescriptor, Value};
use prost_types::method_options::IdempotencyLevel;

use crate::credential::Access;

/// The method option that marks a method as callable without an API key.
const PUBLIC_OPTION: &str = "rapport.api.v1.public";
/// The field option that caps a repeated or map field of a request.
const MAX_ITEMS_OPTION: &str = "rapport.api.v1.max_items";
/// The field option that marks the field a public call is rate limited by.
const RATE_LIMIT_KEY_OPTION: &str = "rapport.api.v1.rate_limit_key";

/// What calling one method needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodRule {
    /// The scope's service name, such as `contacts`.
    pub service: String,
    pub access: Access,
    /// Answered for people outside the tenant: no API key, no scope; the
    /// service checks the token in the request.
    pub public: bool,
    /// The number of the request's field whose value has a rate limit of
    /// its own (a survey token).
    pub rate_limit_key: Option<u32>,
    /// The request message.
    pub input: MessageDescriptor,
}

/// Every routable method by gRPC path (`/rapport.contacts.v1.ContactsService/GetContact`).
#[derive(Debug, Default)]
pub struct MethodTable {
    rules: HashMap<String, MethodRule>,
}

impl MethodTable {
    /// The methods of every `rapport.<service>.v1` package of the contract,
    /// except those of `excluded_services`.
    pub fn new(excluded_services: &[&str]) -> Self {
        Self::from_pool(rapport_proto::descriptor_pool(), excluded_services)
    }

    /// [`MethodTable::new`] over another pool.
    pub fn from_pool(pool: &DescriptorPool, excluded_services: &[&str]) -> Self {
        let public_option = pool.get_extension_by_name(PUBLIC_OPTION);
        let key_option = pool.get_extension_by_name(RATE_LIMIT_KEY_OPTION);
        let mut rules = HashMap::new();
        for grpc_service in pool.services() {
            let Some(service) = grpc_service
                .package_name()
                .strip_prefix("rapport.")
                .and_then(|rest| rest.strip_suffix(".v1"))
            else {
                continue;
            };
            if excluded_services.contains(&grpc_service.full_name()) {
                continue;
            }
            for method in grpc_service.methods() {
                let read_only = method
                    .method_descriptor_proto()
                    .options
                    .as_ref()
                    .is_some_and(|o| o.idempotency_level() == IdempotencyLevel::NoSideEffects);
                let public = public_option.as_ref().is_some_and(|option| {
                    method.options().get_extension(option).as_bool() == Some(true)
                });
                let rate_limit_key = key_option.as_ref().and_then(|option| {
                    method
                        .input()
                        .fields()
                        .find(|field| field.options().get_extension(option).as_bool() == Some(true))
                        .map(|field| field.number())
                });
                let access = if read_only {
                    Access::Read
                } else {
                    Access::Write
                };
                rules.insert(
                    format!("/{}/{}", grpc_service.full_name(), method.name()),
                    MethodRule {
                        service: service.to_owned(),
                        access,
                        public,
                        rate_limit_key,
                        input: method.input(),
                    },
                );
            }
        }
        Self { rules }
    }

    pub fn get(&self, path: &str) -> Option<&MethodRule> {
        self.rules.get(path)
    }
}

/// The most entries `field` of a request may hold, if the contract caps it.
pub fn max_items(field: &FieldDescriptor) -> Option<usize> {
    let option = rapport_proto::descriptor_pool().get_extension_by_name(MAX_ITEMS_OPTION)?;
    let options = field.options();
    if !options.has_extension(&option) {
        return None;
    }
    match options.get_extension(&option).as_ref() {
        Value::U32(cap) => usize::try_from(*cap).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> MethodTable {
        MethodTable::new(&["rapport.gateway.v1.GatewayAdminService"])
    }

    /// The rule without its input descriptor, for comparisons.
    fn access(table: &MethodTable, path: &str) -> Option<(String, Access, bool)> {
        table
            .get(path)
            .map(|rule| (rule.service.clone(), rule.access, rule.public))
    }

    #[test]
    fn reads_and_writes_come_from_the_contract() {
        let table = table();
        let rule = |path: &str| access(&table, path);
        assert_eq!(
            rule("/rapport.contacts.v1.ContactsService/GetContact"),
            Some(("contacts".into(), Access::Read, false))
        );
        assert_eq!(
            rule("/rapport.contacts.v1.ContactsService/ExportContact"),
            Some(("contacts".into(), Access::Read, false))
        );
        assert_eq!(
            rule("/rapport.contacts.v1.ContactsService/EraseContact"),
            Some(("contacts".into(), Access::Write, false))
        );
        assert_eq!(
            table
                .get("/rapport.contacts.v1.ContactsService/GetContact")
                .map(|rule| rule.input.full_name().to_owned()),
            Some("rapport.contacts.v1.GetContactRequest".to_owned())
        );
    }

    #[test]
    fn only_methods_marked_public_are_public() {
        let table = table();
        let public: Vec<_> = table
            .rules
            .iter()
            .filter(|(_, rule)| rule.public)
            .map(|(path, _)| path.as_str())
            .collect();
        assert_eq!(
            public,
            vec!["/rapport.feedback.v1.FeedbackService/SubmitResponse"]
        );
        // Its token field (1) is its rate limit key; no other method has one.
        let keyed: Vec<_> = table
            .rules
            .iter()
            .filter_map(|(path, rule)| Some((path.as_str(), rule.rate_limit_key?)))
            .collect();
        assert_eq!(
            keyed,
            vec![("/rapport.feedback.v1.FeedbackService/SubmitResponse", 1)]
        );
        assert_eq!(
            access(
                &table,
                "/rapport.feedback.v1.FeedbackService/GetSurveySummary"
            ),
            Some(("feedback".into(), Access::Read, false))
        );
    }

    #[test]
    fn excluded_and_unknown_methods_are_absent() {
        let table = table();
        assert_eq!(
            table.get("/rapport.gateway.v1.GatewayAdminService/CreateTenant"),
            None
        );
        assert_eq!(table.get("/rapport.contacts.v1.ContactsService/Nope"), None);
        assert_eq!(table.get("/grpc.health.v1.Health/Check"), None);
    }
}

#[cfg(test)]
mod cap_tests {
    use super::*;

    #[test]
    fn caps_come_from_the_contract() {
        let pool = rapport_proto::descriptor_pool();
        let field = |message: &str, name: &str| {
            pool.get_message_by_name(message)
                .and_then(|m| m.get_field_by_name(name))
                .unwrap()
        };
        assert_eq!(
            max_items(&field(
                "rapport.contacts.v1.BatchUpsertContactsRequest",
                "contacts"
            )),
            Some(1000)
        );
        assert_eq!(
            max_items(&field("rapport.contacts.v1.Contact", "tags")),
            Some(100)
        );
        assert_eq!(
            max_items(&field("rapport.contacts.v1.Contact", "email")),
            None
        );
    }
}
