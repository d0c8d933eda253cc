//! Which service and access each gRPC method needs, read from the proto
//! contract rather than written per method: methods marked
//! `idempotency_level = NO_SIDE_EFFECTS` need read access, all others write.

use std::collections::HashMap;

use prost::Message as _;
use prost_types::method_options::IdempotencyLevel;
use rapport_core::credential::Access;

/// What calling one method needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodRule {
    /// The scope's service name, such as `contacts`.
    pub service: String,
    pub access: Access,
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
        let set = prost_types::FileDescriptorSet::decode(descriptor_set)?;
        let mut rules = HashMap::new();
        for file in &set.file {
            let package = file.package();
            let Some(service) = package
                .strip_prefix("rapport.")
                .and_then(|rest| rest.strip_suffix(".v1"))
            else {
                continue;
            };
            for grpc_service in &file.service {
                let full_name = format!("{package}.{}", grpc_service.name());
                if excluded_services.contains(&full_name.as_str()) {
                    continue;
                }
                for method in &grpc_service.method {
                    let read_only = method
                        .options
                        .as_ref()
                        .is_some_and(|o| o.idempotency_level() == IdempotencyLevel::NoSideEffects);
                    let access = if read_only {
                        Access::Read
                    } else {
                        Access::Write
                    };
                    rules.insert(
                        format!("/{full_name}/{}", method.name()),
                        MethodRule {
                            service: service.to_owned(),
                            access,
                        },
                    );
                }
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
                access: Access::Read
            })
        );
        assert_eq!(
            rule("/rapport.contacts.v1.ContactsService/ExportContact"),
            Some(MethodRule {
                service: "contacts".into(),
                access: Access::Read
            })
        );
        assert_eq!(
            rule("/rapport.contacts.v1.ContactsService/EraseContact"),
            Some(MethodRule {
                service: "contacts".into(),
                access: Access::Write
            })
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
