//! Plain-HTTP routes: which service behind the gateway answers a path
//! prefix (a hosted survey page, campaign tracking and unsubscribe links,
//! the dashboard's files), and whether the caller needs an API key.

use std::str::FromStr;

/// Whether a route takes callers without an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAccess {
    /// Anyone (a link in an email, a survey page): limited per client
    /// address like public gRPC calls.
    Public,
    /// Callers with an API key whose scopes cover the service.
    Keyed,
}

/// One route: `<prefix>=<service>:<public|keyed>`, such as
/// `/s/=feedback:public`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    pub prefix: String,
    pub service: String,
    pub access: RouteAccess,
}

impl FromStr for HttpRoute {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = || format!("{text:?} is not <path prefix>=<service>:<public|keyed>");
        let (prefix, target) = text.trim().split_once('=').ok_or_else(invalid)?;
        let (service, access) = target.split_once(':').ok_or_else(invalid)?;
        let access = match access {
            "public" => RouteAccess::Public,
            "keyed" => RouteAccess::Keyed,
            _ => return Err(invalid()),
        };
        if !prefix.starts_with('/') || prefix.len() < 2 {
            return Err(format!(
                "{prefix:?}: a route's prefix is a path, such as /s/"
            ));
        }
        // gRPC paths are the method table's.
        if prefix.starts_with("/rapport.") || prefix.starts_with("/grpc.") {
            return Err(format!("{prefix:?} is a gRPC path"));
        }
        if service.is_empty() || !service.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return Err(invalid());
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            service: service.to_owned(),
            access,
        })
    }
}

/// The routes, longest prefix first, so the most specific one answers.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<HttpRoute>,
}

impl RouteTable {
    pub fn new(mut routes: Vec<HttpRoute>) -> Result<Self, String> {
        routes.sort_by_key(|route| std::cmp::Reverse(route.prefix.len()));
        if let Some(pair) = routes
            .windows(2)
            .find(|pair| pair[0].prefix == pair[1].prefix)
        {
            return Err(format!("two routes for {}", pair[0].prefix));
        }
        Ok(Self { routes })
    }

    /// The route answering `path`, if any.
    pub fn find(&self, path: &str) -> Option<&HttpRoute> {
        self.routes
            .iter()
            .find(|route| path.starts_with(&route.prefix))
    }

    pub fn routes(&self) -> &[HttpRoute] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(text: &str) -> HttpRoute {
        text.parse().unwrap()
    }

    #[test]
    fn a_route_names_a_prefix_a_service_and_who_may_call() {
        assert_eq!(
            route("/s/=feedback:public"),
            HttpRoute {
                prefix: "/s/".into(),
                service: "feedback".into(),
                access: RouteAccess::Public,
            }
        );
        assert_eq!(
            route(" /exports/=analytics:keyed").access,
            RouteAccess::Keyed
        );
        for bad in [
            "/s/=feedback",
            "/s/=feedback:open",
            "s/=feedback:public",
            "/=feedback:public",
            "/rapport.contacts.v1.ContactsService/=contacts:public",
            "/s/=Feedback:public",
        ] {
            assert!(bad.parse::<HttpRoute>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_longest_matching_prefix_answers() {
        let table = RouteTable::new(vec![
            route("/s/=feedback:public"),
            route("/s/admin/=feedback:keyed"),
        ])
        .unwrap();
        assert_eq!(table.find("/s/abc").unwrap().access, RouteAccess::Public);
        assert_eq!(table.find("/s/admin/x").unwrap().access, RouteAccess::Keyed);
        assert_eq!(table.find("/t/abc"), None);
        assert!(
            RouteTable::new(vec![
                route("/s/=feedback:public"),
                route("/s/=contacts:keyed")
            ])
            .is_err()
        );
    }
}
