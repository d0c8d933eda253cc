//! Which service and access each gRPC method needs, read from the proto
//! contract rather than written per method: methods marked
//! `idempotency_level = NO_SIDE_EFFECTS` need read access, all others write,
//! and methods marked `(rapport.api.v1.public) = true` need no API key.

use std::collections::HashMap;

use prost_reflect::DescriptorPool;
use prost_types::method_options::IdempotencyLevel;
use rapport_core::credential::Access;

/// The method option that marks a method as callable without an API key.
const PUBLIC_OPTION: &str = "rapport.api.v1.public";

/// What calling one method needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodRule {
    /// The scope's service name, such as `contacts`.
    pub service: String,
    pub access: Access,
    /// Answered for people outside the tenant: no API key, no scope; the
    /// service checks the token in the request.
    pub public: bool,
}

/// Every routable method by gRPC path (`/rapport.contacts.v1.ContactsService/GetContact`).
#[derive(Debug, Default)]
pub struct MethodTable {
    rules: HashMap<String, MethodRule>,
}

impl MethodTable {
    /// The methods of every `rapport.<service>.v1` package in `descriptor_set`,
    /// except those of `excluded_services` (served by the gateway itself).
    pub fn from_descriptor_set(
        descriptor_set: &[u8],
        excluded_services: &[&str],
    ) -> anyhow::Result<Self> {
        // prost-reflect, unlike prost-types, keeps custom options.
        let pool = DescriptorPool::decode(descriptor_set)?;
        let public_option = pool.get_extension_by_name(PUBLIC_OPTION);
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
                    },
                );
            }
        }
        Ok(Self { rules })
    }

    pub fn get(&self, path: &str) -> Option<&MethodRule> {
        self.rules.get(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> MethodTable {
        MethodTable::from_descriptor_set(
            rapport_proto::FILE_DESCRIPTOR_SET,
            &["rapport.gateway.v1.GatewayAdminService"],
        )
        .unwrap()
    }

    #[test]
    fn reads_and_writes_come_from_the_contract() {
        let table = table();
        let rule = |path: &str| table.get(path).cloned();
        assert_eq!(
            rule("/rapport.contacts.v1.ContactsService/GetContact"),
            Some(MethodRule {
                service: "contacts".into(),
                access: Access::Read,
                public: false,
            })
        );
        assert_eq!(
            rule("/rapport.contacts.v1.ContactsService/ExportContact"),
            Some(MethodRule {
                service: "contacts".into(),
                access: Access::Read,
                public: false,
            })
        );
        assert_eq!(
            rule("/rapport.contacts.v1.ContactsService/EraseContact"),
            Some(MethodRule {
                service: "contacts".into(),
                access: Access::Write,
                public: false,
            })
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
        assert_eq!(
            table
                .get("/rapport.feedback.v1.FeedbackService/GetSurveySummary")
                .map(|rule| (rule.service.as_str(), rule.access, rule.public)),
            Some(("feedback", Access::Read, false))
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
